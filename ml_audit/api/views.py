"""Read-only API views over the audit trail.

=================================  ==============================================================
``GET``  (the mount point)         the API root: the endpoints below as absolute URLs
``GET predictions/``               predictions, newest first, filtered (:mod:`.filters`), paged
``GET predictions/{uuid}/``        one prediction by its UUID primary key
``GET models/``                    known model versions (``model_name``, ``version``, ...)
``GET models/{uuid}/``             one model version by its UUID primary key
``GET traces/{trace_id}/``         every prediction of one W3C trace, oldest first
``GET seals/``, ``holds/``, ...    seals, a prediction's seal and proof, legal holds:
                                   :mod:`ml_audit.api.trail`
``predictions/{uuid}/reviews/``    ``GET`` a prediction's reviews; ``POST`` appends one, the
                                   API's one write (``ml_audit.add_review``): :mod:`.reviews`
=================================  ==============================================================

Every query reads ``store.resolve_alias()`` (``ML_AUDIT['DATABASE_ALIAS']``) and is scoped to
the tenants ``ML_AUDIT['API_TENANT_RESOLVER']`` allows: another tenant's prediction is a 404,
exactly like a missing one. Model versions are listed to a tenant-scoped user only when one of
their predictions is visible to it. Predictions without a tenant are visible only to unscoped
users, unless the resolver allows ``""``.

A request is refused, in this order (every refusal is a JSON body):

1. 405 (with an ``Allow`` header) for any method but ``GET``, ``HEAD`` and ``OPTIONS``, before
   authentication and permissions: no endpoint writes, for anyone, so there is nothing to
   authenticate for (and a logged-in browser's ``POST`` gets 405, not a CSRF failure); the
   one exception is ``POST predictions/{uuid}/reviews/`` (:mod:`.reviews`);
2. 401/403 unless ``ML_AUDIT['API_PERMISSION_CLASSES']`` allow it (:mod:`.permissions`;
   DRF's project-wide default permission classes are not used);
3. 400 for a query parameter the endpoint does not know, one key per unknown parameter (a
   list accepts its filters, its pagination parameters, ``cursor`` or ``page`` and
   ``page_size``, whichever ``ML_AUDIT['API_PAGINATION']`` selects, and DRF's ``format``; a
   detail, a trace and the root only ``format``; with DRF's ``QueryParameterVersioning``, its
   version parameter too), then 400 for a value a filter cannot read, 404 for what does not
   exist or is not visible. A path below the mount point that names no endpoint is a JSON 404
   whoever asks (:class:`EndpointNotFoundView`).

A list or detail request costs at most three queries for its data, whatever the page size: the
page (model and actor joined), what hangs off the page's predictions (explanation revisions with
their reason codes, reviews and outcomes: one ``UNION ALL`` query, :func:`.rows.related_of`),
and in ``"page"`` pagination mode the count (:mod:`.pagination`). A detail takes two.
Authentication and permission look-ups are the auth backend's and
come on top, and so does the access log's single ``INSERT`` (below).

Predictions are read as ``values()`` dicts and turned into JSON by :mod:`.rows` (the shape of
:class:`~.serializers.PredictionEventSerializer`, which stays the schema's source), and rendered
by :class:`~.renderers.AuditJSONRenderer` (orjson when installed) in place of DRF's
``JSONRenderer``; see those modules for why.

Access log ("audit of the audit", HIPAA 164.312(b)): unless ``ML_AUDIT['API_ACCESS_LOG']`` is
False, every request that reaches one of these views is recorded as one append-only
:class:`~ml_audit.models.AccessLog` row, written with one ``INSERT`` on the audit alias when the
response is finalised: successful reads with the UUIDs of the predictions they returned, and
refused or failed ones too (401/403 without permission, 400 for a bad or unknown parameter,
404, 405, 500) with ``returned_ids=[]``, so that probing and denied attempts leave a trace as
well. Its ``endpoint`` is ``predictions-list``, ``predictions-detail``, ``models-list``,
``models-detail``, ``traces-detail``, ``api-root``, or ``not-found`` for a path below the mount
point that names no endpoint. Anonymous requests are logged with an empty ``user_id``. If the
row cannot be written the request fails (the data is not returned unrecorded).

An exception a view does not turn into a response (a bug, a database error) is a 500 whose
body is JSON (``{"detail": "A server error occurred."}``, nothing of the exception), logged
to ``django.request`` with its traceback and sent through Django's ``got_request_exception``
signal as Django does for its own 500s, and access-logged as such. With ``DEBUG = True`` it is
access-logged and then raised, for Django's debug page.

The views run outside ``ATOMIC_REQUESTS`` transactions, on every alias: they only read, and
DRF marks the request's transaction for rollback when it refuses a request, which would
otherwise make the access log's ``INSERT`` of every refused request fail (and roll back).

The browsable API and ``OPTIONS`` show each view's docstring as its description, with the
reStructuredText markup taken out (:func:`plain_description`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.signals import got_request_exception
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponseBase
from django.urls import NoReverseMatch
from django.utils.html import escape
from django.utils.log import log_response
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import csrf_exempt
from django_filters.rest_framework import DjangoFilterBackend  # type: ignore[import-untyped]
from rest_framework import compat, viewsets
from rest_framework.exceptions import APIException, MethodNotAllowed, NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import BasePagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.settings import api_settings
from rest_framework.utils import formatting
from rest_framework.versioning import QueryParameterVersioning
from rest_framework.views import APIView

from ml_audit import store
from ml_audit.api import access, filters, pagination, permissions, renderers, rows, serializers
from ml_audit.api.access import EVERY_ALIAS, allowed_tenants, visible_predictions
from ml_audit.conf import audit_settings, trace_url
from ml_audit.models import ModelVersion, PredictionEvent

__all__ = [
    "ApiRootView",
    "EndpointNotFoundView",
    "ModelVersionViewSet",
    "PredictionEventViewSet",
    "ReadMethodsFirst",
    "TraceViewSet",
    "allowed_tenants",
    "description_html",
    "endpoint_not_found",
    "plain_description",
    "visible_predictions",
]

UUID_PATTERN = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
PREDICTION_ORDERING = ("-timestamp", "-id")
#: The URL namespace of :mod:`ml_audit.api.urls` (``app_name``).
NAMESPACE = "ml_audit_api"
#: Our router basenames -> django-ml-audit 0.2.0's, whose route names stay reversible.
LEGACY_BASENAMES = {"prediction": "ml-audit-prediction", "model": "ml-audit-model"}

logger = logging.getLogger("ml_audit.api")

#: The body of a 500: nothing of the exception.
SERVER_ERROR_DETAIL = "A server error occurred."


_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`([^`]+)`")
_TITLED_TARGET = re.compile(r"(.+?)\s*<[^<>]+>", re.DOTALL)
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_LITERAL_BLOCK = re.compile(r"(\S)::$", re.MULTILINE)
_LIST_ITEM = re.compile(r"(?:[-*+]|\d+[.)]) ")
_CODE = re.compile(r"`([^`\n]+)`")


def _role_text(match: re.Match[str]) -> str:
    target = match.group(1)
    titled = _TITLED_TARGET.fullmatch(target)
    if titled is not None:
        return titled.group(1)
    shortened = target.startswith("~")
    target = target.lstrip("~").lstrip(".")
    return f"`{target.rsplit('.', 1)[-1] if shortened else target}`"


def _unwrapped(paragraph: str) -> str:
    """A paragraph's lines joined, unless it is a literal block (indented) or a list."""
    lines = paragraph.split("\n")
    if any(line[:1].isspace() or _LIST_ITEM.match(line) for line in lines):
        return paragraph
    return " ".join(line.strip() for line in lines)


def plain_description(docstring: str) -> str:
    """``docstring`` (dedented) without its reStructuredText markup, as readable plain text
    that is also Markdown: roles (``:class:`~.serializers.X```) become the name they show
    (`` `X` ``), double-backquoted literals single-backquoted code, a paragraph's closing
    ``::`` one colon, and each paragraph's wrapped lines one line."""
    text = formatting.dedent(docstring)
    text = _ROLE.sub(_role_text, text)
    text = _LITERAL.sub(r"`\1`", text)
    text = _LITERAL_BLOCK.sub(r"\1:", text)
    return "\n\n".join(_unwrapped(p) for p in re.split(r"\n\s*\n", text) if p.strip())


def description_html(description: str) -> str:
    """A :func:`plain_description` as HTML: Markdown's rendering when DRF has it (the
    ``markdown`` package), else paragraphs with `` `code` `` as ``<code>``."""
    if compat.apply_markdown is not None:
        return formatting.markup_description(description)
    parts: list[str] = []
    for paragraph in description.split("\n\n"):
        escaped = str(escape(paragraph))
        if all(line[:1].isspace() for line in paragraph.split("\n")):  # a literal block
            parts.append(f"<pre><code>{escaped}</code></pre>")
        else:
            code = _CODE.sub(r"<code>\1</code>", escaped)
            parts.append(f"<p>{code.replace(chr(10), '<br />')}</p>")
    return mark_safe("".join(parts))  # every part is escaped above


class ReadMethodsFirst(APIView):
    """Refuses a method the view has no handler for with 405 before authentication, so that
    a write is "Method Not Allowed" for everyone (anonymous, unprivileged, or a browser session
    without a CSRF token) rather than 401/403: no endpoint of this API writes, for anyone, but
    ``POST predictions/{uuid}/reviews/`` (:mod:`.reviews`), which has a handler."""

    def perform_authentication(self, request: Request) -> None:
        method = (request.method or "").lower()
        if method not in self.http_method_names or not hasattr(self, method):
            raise MethodNotAllowed(request.method or "")
        super().perform_authentication(request)


def _framework_parameters(request: Request) -> tuple[str, ...]:
    """Query parameters DRF itself reads on every endpoint: ``format`` (its
    ``URL_FORMAT_OVERRIDE``) and the version parameter of ``QueryParameterVersioning``."""
    names: tuple[str, ...] = ()
    format_override = api_settings.URL_FORMAT_OVERRIDE  # what DRF's negotiation reads
    if format_override:
        names += (format_override,)
    scheme = getattr(request, "versioning_scheme", None)
    if isinstance(scheme, QueryParameterVersioning) and scheme.version_param:
        names += (scheme.version_param,)
    return names


class _AuditAPIView(ReadMethodsFirst):
    """What every view of the API shares: permissions from
    ``ML_AUDIT['API_PERMISSION_CLASSES']``, the refusals in their order (405, 401/403, 400 for
    an unknown query parameter), the JSON renderer, plain descriptions and the access log."""

    #: First half of ``AccessLog.endpoint`` ("predictions" -> "predictions-list").
    access_log_resource = ""
    #: Whether the rows this endpoint returns are predictions (their ids are logged).
    access_log_predictions = True

    @classmethod
    def as_view(cls, *args: Any, **initkwargs: Any) -> Any:
        view: Any = super().as_view(*args, **initkwargs)
        # No request transaction: see the module docstring.
        view._non_atomic_requests = EVERY_ALIAS
        return view

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # 405, then authentication and permissions
        self.check_query_parameters(request)

    def handle_exception(self, exc: Exception) -> Response:
        try:
            return super().handle_exception(exc)
        except Exception as uncaught:  # what the exception handler leaves: a server error
            return self.server_error(uncaught)

    def server_error(self, exc: Exception) -> Response:
        """The JSON 500 of an exception no handler answered, logged as Django logs its own
        500s and access-logged; with ``DEBUG`` access-logged and raised (Django's debug page)."""
        request = self.request
        django_request = getattr(request, "_request", request)
        response = Response({"detail": SERVER_ERROR_DETAIL}, status=500)
        # JSON whatever was negotiated: the browsable API would run the failing code again.
        request.accepted_renderer = renderers.AuditJSONRenderer()
        request.accepted_media_type = request.accepted_renderer.media_type
        if settings.DEBUG:
            if audit_settings.API_ACCESS_LOG:
                self.record_access_of_error(request, response)
            raise exc
        got_request_exception.send(sender=type(self), request=django_request)
        log_response(
            "%s: %s",
            "Internal Server Error",
            django_request.path,
            response=response,
            request=django_request,
            exception=exc,
        )
        response.exception = True
        return response

    def record_access_of_error(self, request: Request, response: Response) -> None:
        """The access log row of a 500; a failure to write it is logged, not raised (the
        request has already failed, and returns nothing)."""
        try:
            self.record_access(request, response)
        except Exception:
            logger.exception("The access log row of a failed request could not be written.")

    def endpoint_query_parameters(self) -> frozenset[str]:
        """The query parameters this endpoint reads itself (``format`` aside)."""
        return frozenset()

    def check_query_parameters(self, request: Request) -> None:
        """A 400 naming every query parameter this endpoint does not read."""
        query = request.query_params
        if not query:
            return
        own = self.endpoint_query_parameters()
        framework = _framework_parameters(request)
        unknown = [name for name in query if name not in own and name not in framework]
        if unknown:
            accepted = ", ".join(sorted(own.union(framework))) or "none"
            message = f"Unknown query parameter. This endpoint accepts: {accepted}."
            raise ValidationError({name: [message] for name in unknown})

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if audit_settings.API_ACCESS_LOG:
            if response.status_code >= 500:
                self.record_access_of_error(request, response)
            else:
                self.record_access(request, response)
        return response

    def access_log_endpoint(self) -> str:
        """``AccessLog.endpoint`` of this request."""
        detail = bool(getattr(self, "detail", False))
        return f"{self.access_log_resource}-{'detail' if detail else 'list'}"

    def access_log_rows(self, data: Any) -> list[Any]:
        """The rows a successful GET returned (a page, one object, or a trace's predictions)."""
        if getattr(self, "detail", False):
            return [data]
        if isinstance(data, dict):
            return list(data.get("results", []))
        return list(data)

    def record_access(self, request: Request, response: Response) -> None:
        """Write one ``AccessLog`` row for this request (one ``INSERT``)."""
        try:
            user = request.user
        except APIException:  # authentication failed before or while resolving the user
            user = None
        rows: list[Any] = []
        if request.method in ("GET", "HEAD") and 200 <= response.status_code < 300:
            rows = self.access_log_rows(response.data)
        access.record_access(
            request,
            user=user,
            endpoint=self.access_log_endpoint(),
            status_code=response.status_code,
            returned_ids=[str(row["id"]) for row in rows] if self.access_log_predictions else [],
            result_count=len(rows),
        )

    def get_permissions(self) -> list[Any]:
        return [permission() for permission in permissions.configured_permission_classes()]

    def get_renderers(self) -> list[BaseRenderer]:
        # DRF's JSONRenderer, wherever the project lists it, becomes its faster equivalent.
        return [
            renderers.AuditJSONRenderer() if cls is JSONRenderer else cls()
            for cls in self.renderer_classes
        ]

    def get_view_description(self, html: bool = False) -> str:
        # The docstring without its reStructuredText roles and literals, whatever
        # REST_FRAMEWORK['VIEW_DESCRIPTION_FUNCTION'] says (it would show them raw).
        description = plain_description(type(self).__doc__ or "")
        return description_html(description) if html else description


#: (view class, paginator class) -> the query parameters of that list.
_list_parameters: dict[tuple[type[Any], type[Any]], frozenset[str]] = {}


class _AuditAPIMixin(_AuditAPIView, GenericAPIView[Any]):
    """The viewsets' share: the configured paginator, the filters, request-context fields."""

    pagination_ordering: tuple[str, ...] = PREDICTION_ORDERING

    def endpoint_query_parameters(self) -> frozenset[str]:
        # A detail reads no query parameter; a list its filters and its paginator's.
        if getattr(self, "detail", False):
            return frozenset()
        paginator = self.paginator
        key = (type(self), type(paginator))
        names = _list_parameters.get(key)
        if names is None:
            names = pagination.query_parameters(paginator)
            filterset_class = getattr(self, "filterset_class", None)
            if filterset_class is not None:
                names |= filters.parameter_names(filterset_class)
            _list_parameters[key] = names
        return names

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        # A request that names none of the filters would get every filter's "no value": the
        # queryset unchanged. Building and validating the FilterSet's form (15 fields) costs
        # about a millisecond, so it is built only when a filter parameter is present.
        filterset_class = getattr(self, "filterset_class", None)
        if filterset_class is not None and filters.names_no_filter(
            filterset_class, self.request.query_params
        ):
            return queryset
        return super().filter_queryset(queryset)

    def show_request_context(self) -> bool:
        return permissions.can_view_request_context(self.request)

    def prediction_data(self, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The JSON-ready dicts of ``page`` (:func:`rows.prediction_values` rows): one query
        for their explanations, reason codes, reviews and outcomes."""
        related = rows.related_of(store.resolve_alias(), [row["id"] for row in page])
        return rows.serialize_predictions(
            page, related, show_request_context=self.show_request_context()
        )

    @property
    def paginator(self) -> BasePagination | None:
        if not hasattr(self, "_paginator"):
            self._paginator = pagination.build_paginator(self.pagination_ordering)
        return self._paginator

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        context["show_request_context"] = permissions.can_view_request_context(self.request)
        return context


class PredictionEventViewSet(_AuditAPIMixin, viewsets.ReadOnlyModelViewSet[PredictionEvent]):
    """Recorded predictions, newest first (``GET predictions/``), or one by its UUID
    (``GET predictions/{uuid}/``), each with its model version, actor, current explanation
    (with the ``reason_codes`` of that revision; ``explanation_revisions`` counts every
    revision), ``trace_url``, ``subject_ref`` (the data subject's pseudonymous reference, "" for
    none), its ``reviews`` (latest first), ``effective_outcome`` (the latest override's
    ``final_outcome``, else the model's ``decision_outcome``), and its observed ``outcomes``
    (latest first) with the latest as ``outcome``.

    Filters of the list (exact matches unless noted): ``model_name``,
    ``model_version``, ``actor_type``, ``actor_id``, ``tenant_id``, ``decision_outcome``,
    ``environment``, ``status``, ``prediction_id``, ``trace_id`` (a W3C trace id, or else the
    correlation id), ``has_explanation`` (true/false), ``min_confidence`` and
    ``max_confidence`` (between 0 and 1, inclusive), ``time_from`` and ``time_to`` (ISO 8601
    datetimes, read in UTC without an offset, or dates; inclusive), ``subject`` (a subject
    reference: 64 hex digits), ``review_action`` (predictions with at least one review of this
    action), ``has_override`` and ``has_outcome`` (true/false). Pages of ``page_size``
    rows. An unknown parameter or a value that cannot be read is a 400 naming the parameter.
    """

    serializer_class = serializers.PredictionEventSerializer
    filter_backends = (DjangoFilterBackend,)
    filterset_class = filters.PredictionEventFilterSet
    access_log_resource = "predictions"
    lookup_value_regex = UUID_PATTERN

    def get_queryset(self) -> QuerySet[PredictionEvent]:
        if self.action == "retrieve":
            # A model instance, as before, for the permission classes' has_object_permission.
            return visible_predictions(self.request).select_related("model", "actor")
        values = rows.prediction_values(
            store.resolve_alias(), show_request_context=self.show_request_context()
        )
        return visible_predictions(self.request, values.order_by(*PREDICTION_ORDERING))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        if page is None:  # pragma: no cover - build_paginator always gives a paginator
            return Response(self.prediction_data(list(queryset)))
        return self.get_paginated_response(self.prediction_data(page))

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        show = self.show_request_context()
        if permissions.checks_objects(self.get_permissions()):
            # A permission class looks at the object: give it the model instance, as DRF does.
            event = self.get_object()
            row = rows.row_from_instance(event, show_request_context=show)
            return Response(self.prediction_data([row])[0])
        # Otherwise the prediction as a row, then what hangs off it: two queries.
        queryset = self.filter_queryset(
            visible_predictions(
                request, rows.prediction_values(store.resolve_alias(), show_request_context=show)
            )
        )
        lookup = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        try:
            found = list(queryset.filter(**{self.lookup_field: lookup}))
        except (TypeError, ValueError, DjangoValidationError):  # as DRF's get_object_or_404
            raise Http404 from None
        if not found:
            raise Http404("No prediction matches the given query.")
        return Response(self.prediction_data(found)[0])


class ModelVersionViewSet(_AuditAPIMixin, viewsets.ReadOnlyModelViewSet[ModelVersion]):
    """Known model versions, by name and version (``GET models/``), or one by its UUID
    (``GET models/{uuid}/``).

    Filters of the list (exact matches): ``model_name``, ``version``, ``framework``. Pages of
    ``page_size`` rows.
    """

    serializer_class = serializers.ModelVersionSerializer
    filter_backends = (DjangoFilterBackend,)
    filterset_class = filters.ModelVersionFilterSet
    pagination_ordering = ("model_name", "version", "id")
    access_log_resource = "models"
    access_log_predictions = False
    lookup_value_regex = UUID_PATTERN

    def get_queryset(self) -> QuerySet[ModelVersion]:
        queryset = ModelVersion.objects.using(store.resolve_alias())
        return access.visible_model_versions(
            self.request, queryset.order_by(*self.pagination_ordering)
        )


class TraceViewSet(_AuditAPIMixin, viewsets.GenericViewSet[PredictionEvent]):
    """The predictions of one W3C trace, oldest first (``GET traces/{trace_id}/``).

    Returns ``{"trace_id", "trace_url", "count", "truncated", "predictions"}``; at most
    ``ML_AUDIT['API_MAX_PAGE_SIZE']`` predictions (``truncated`` says when there were more: page
    through them with ``GET predictions/?trace_id=...``). A trace with no visible prediction is a
    404.
    """

    serializer_class = serializers.PredictionEventSerializer
    lookup_field = "trace_id"
    lookup_value_regex = "[0-9a-fA-F]{32}"
    access_log_resource = "traces"

    def access_log_rows(self, data: Any) -> list[Any]:
        return list(data["predictions"])

    def get_queryset(self) -> QuerySet[PredictionEvent]:
        values = rows.prediction_values(
            store.resolve_alias(), show_request_context=self.show_request_context()
        )
        return visible_predictions(self.request, values.order_by("timestamp", "id"))

    def retrieve(self, request: Request, trace_id: str) -> Response:
        limit = audit_settings.API_MAX_PAGE_SIZE
        trace_id = trace_id.lower()
        found: list[Any] = list(self.get_queryset().filter(trace_id=trace_id)[: limit + 1])
        if not found:
            raise Http404("No prediction of this trace is visible to you.")
        shown = found[:limit]
        return Response(
            {
                "trace_id": trace_id,
                "trace_url": trace_url(trace_id),
                "count": len(shown),
                "truncated": len(found) > limit,
                "predictions": self.prediction_data(shown),
            }
        )


class ApiRootView(_AuditAPIView):
    """The endpoints of this API, as absolute URLs: ``predictions``, ``models``, ``traces`` (a
    URI template: put a W3C trace id in place of ``{trace_id}``), ``seals``, ``holds`` and
    ``schema`` (the OpenAPI 3 document, when drf-spectacular is installed).

    Behind the same permissions as the rest of the API
    (``ML_AUDIT['API_PERMISSION_CLASSES']``), and recorded in the access log as ``api-root``.
    """

    access_log_predictions = False
    #: Excluded from the OpenAPI document, as DRF's own root view is.
    schema = None

    def access_log_endpoint(self) -> str:
        return "api-root"

    def access_log_rows(self, data: Any) -> list[Any]:
        return []

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        match = request.resolver_match
        # The instance namespace the API was mounted under (NAMESPACE unless the project
        # chose another, possibly nested).
        namespace = match.namespace if match is not None and match.namespace else NAMESPACE

        def url(name: str, **url_kwargs: str) -> str:
            return str(reverse(f"{namespace}:{name}", kwargs=url_kwargs, request=request))

        placeholder = "0" * 32
        head, _, tail = url("trace-detail", trace_id=placeholder).rpartition(placeholder)
        endpoints = {
            "predictions": url("prediction-list"),
            "models": url("model-list"),
            "traces": f"{head}{{trace_id}}{tail}",
            "seals": url("seal-list"),
            "holds": url("hold-list"),
        }
        with contextlib.suppress(NoReverseMatch):  # no drf-spectacular: no schema route
            endpoints["schema"] = url("schema")
        return Response(endpoints)


class EndpointNotFoundView(_AuditAPIView):
    """A path below the API's mount point that names no endpoint: a JSON 404, for every
    method and whoever asks (there is nothing to protect), recorded in the access log as
    ``not-found``."""

    access_log_predictions = False

    def access_log_endpoint(self) -> str:
        return "not-found"

    def get_permissions(self) -> list[Any]:
        return []

    def perform_authentication(self, request: Request) -> None:
        # Not ReadMethodsFirst's 405: no method exists here. (The user is still resolved,
        # lazily, for the access log.)
        raise NotFound("No API endpoint matches this path.")

    @property
    def default_response_headers(self) -> dict[str, str]:
        headers: dict[str, str] = dict(super().default_response_headers)
        headers.pop("Allow", None)  # no method is allowed on a path that does not exist
        return headers


_endpoint_not_found: Callable[..., HttpResponseBase] = EndpointNotFoundView.as_view()


@csrf_exempt  # as every DRF view: a POST is answered 404, not refused by the CSRF middleware
def endpoint_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """:class:`EndpointNotFoundView`, as a plain function view: DRF's browsable API lists every
    DRF view that a prefix of the current URL resolves to in its breadcrumbs, and a prefix such
    as ``traces/`` must not show up there as a page of its own."""
    return _endpoint_not_found(request, *args, **kwargs)


endpoint_not_found._non_atomic_requests = EVERY_ALIAS  # type: ignore[attr-defined]
