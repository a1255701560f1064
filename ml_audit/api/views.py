"""Read-only API views over the audit trail.

=================================  ==============================================================
``GET predictions/``               predictions, newest first, filtered (:mod:`.filters`), paged
``GET predictions/{uuid}/``        one prediction by its UUID primary key
``GET models/``                    known model versions (``name``, ``version``, ``framework``)
``GET traces/{trace_id}/``         every prediction of one W3C trace, oldest first
=================================  ==============================================================

Every query reads ``store.resolve_alias()`` (``ML_AUDIT['DATABASE_ALIAS']``) and is scoped to
the tenants ``ML_AUDIT['API_TENANT_RESOLVER']`` allows: another tenant's prediction is a 404,
exactly like a missing one. Model versions are listed to a tenant-scoped user only when one of
their predictions is visible to it. Predictions without a tenant are visible only to unscoped
users, unless the resolver allows ``""``.

A list or detail request costs at most three queries for its data, whatever the page size: the
page (model and actor joined), the explanations of the page's predictions (one query; a detail
reads its prediction and explanations together, in one), and in ``"page"`` pagination mode the
count (:mod:`.pagination`). Authentication and permission look-ups are the auth backend's and
come on top, and so does the access log's single ``INSERT`` (below).

Predictions are read as ``values()`` dicts and turned into JSON by :mod:`.rows` (the shape of
:class:`~.serializers.PredictionEventSerializer`, which stays the schema's source), and rendered
by :class:`~.renderers.AuditJSONRenderer` (orjson when installed) in place of DRF's
``JSONRenderer``; see those modules for why.

Access log ("audit of the audit", HIPAA 164.312(b)): unless ``ML_AUDIT['API_ACCESS_LOG']`` is
False, every request that reaches one of these views is recorded as one append-only
:class:`~ml_audit.models.AccessLog` row, written with one ``INSERT`` on the audit alias when the
response is finalised: successful reads with the UUIDs of the predictions they returned, and
refused or failed ones too (401/403 without permission, 400 for a bad filter, 404, 405) with
``returned_ids=[]``, so that probing and denied attempts leave a trace as well. Anonymous
requests are logged with an empty ``user_id``. If the row cannot be written the request fails
(the data is not returned unrecorded). A request that crashes with a 500 is not logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend  # type: ignore[import-untyped]
from rest_framework import viewsets
from rest_framework.exceptions import APIException
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import BasePagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from ml_audit import actors, store
from ml_audit.api import filters, pagination, permissions, renderers, rows, serializers
from ml_audit.conf import audit_settings, trace_url
from ml_audit.exceptions import ConfigurationError
from ml_audit.models import AccessLog, ModelVersion, PredictionEvent

__all__ = [
    "ModelVersionViewSet",
    "PredictionEventViewSet",
    "TraceViewSet",
    "allowed_tenants",
    "visible_predictions",
]

UUID_PATTERN = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
PREDICTION_ORDERING = ("-timestamp", "-id")

# allowed_tenants() remembers its answer on the request, for the access log.
_TENANTS_ATTR = "_ml_audit_allowed_tenants"
_UNRESOLVED = object()


def allowed_tenants(request: Request) -> frozenset[str] | None:
    """The tenant ids this request may read, or ``None`` for all (no resolver, or it said so)."""
    cached = getattr(request, _TENANTS_ATTR, _UNRESOLVED)
    if cached is not _UNRESOLVED:
        return cached  # type: ignore[return-value]
    tenants = _resolve_tenants(request)
    setattr(request, _TENANTS_ATTR, tenants)
    return tenants


def _resolve_tenants(request: Request) -> frozenset[str] | None:
    resolver = audit_settings.API_TENANT_RESOLVER
    if resolver is None:
        return None
    tenants: str | Iterable[Any] | None = resolver(request)
    if tenants is None:
        return None
    if isinstance(tenants, str):
        return frozenset({tenants})
    if not isinstance(tenants, Iterable):
        raise ConfigurationError(
            "ML_AUDIT['API_TENANT_RESOLVER'] must return an iterable of tenant ids, a single "
            f"tenant id or None, not {tenants!r}."
        )
    return frozenset(str(tenant) for tenant in tenants)


def visible_predictions(
    request: Request, queryset: QuerySet[PredictionEvent, Any] | None = None
) -> QuerySet[PredictionEvent, Any]:
    """Predictions ``request`` may read (tenant scoping), on the audit alias; nothing loaded.

    ``queryset``: the predictions to narrow (a query on the audit alias); default all of them.
    """
    if queryset is None:
        queryset = PredictionEvent.objects.using(store.resolve_alias())
    tenants = allowed_tenants(request)
    if tenants is not None:
        queryset = queryset.filter(tenant_id__in=tenants)
    return queryset


def _clean(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL text and JSON values cannot hold."""
    return text.replace("\x00", "\ufffd")


class _AuditAPIMixin(GenericAPIView[Any]):
    """Permissions from ``ML_AUDIT['API_PERMISSION_CLASSES']``, the configured paginator and
    the access log."""

    pagination_ordering: tuple[str, ...] = PREDICTION_ORDERING
    #: First half of ``AccessLog.endpoint`` ("predictions" -> "predictions-list").
    access_log_resource = ""
    #: Whether the rows this endpoint returns are predictions (their ids are logged).
    access_log_predictions = True

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if audit_settings.API_ACCESS_LOG:
            self.record_access(request, response)
        return response

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
        authenticated = bool(user is not None and user.is_authenticated)
        rows: list[Any] = []
        if request.method in ("GET", "HEAD") and 200 <= response.status_code < 300:
            rows = self.access_log_rows(response.data)
        returned_ids = [str(row["id"]) for row in rows] if self.access_log_predictions else []
        tenants = getattr(request, _TENANTS_ATTR, None)
        detail = bool(getattr(self, "detail", False))
        AccessLog(
            accessed_at=timezone.now(),
            user_id=str(user.pk) if authenticated and user is not None else "",
            username=_clean(user.get_username())[:150] if authenticated and user else "",
            endpoint=f"{self.access_log_resource}-{'detail' if detail else 'list'}",
            method=str(request.method)[:16],
            path=_clean(request.path),
            query={
                _clean(name): [_clean(value) for value in request.query_params.getlist(name)]
                for name in request.query_params
            },
            status_code=response.status_code,
            returned_ids=returned_ids,
            result_count=len(rows),
            client_ip=actors.client_ip(request),
            tenant_scope=None if not isinstance(tenants, frozenset) else sorted(tenants),
        ).save(using=store.resolve_alias())

    def get_permissions(self) -> list[Any]:
        return [permission() for permission in permissions.configured_permission_classes()]

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

    def get_renderers(self) -> list[BaseRenderer]:
        # DRF's JSONRenderer, wherever the project lists it, becomes its faster equivalent.
        return [
            renderers.AuditJSONRenderer() if cls is JSONRenderer else cls()
            for cls in self.renderer_classes
        ]

    def show_request_context(self) -> bool:
        return permissions.can_view_request_context(self.request)

    def prediction_data(self, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The JSON-ready dicts of ``page`` (:func:`rows.prediction_values` rows): one query
        for their explanations."""
        explained = rows.explanations_of(store.resolve_alias(), [row["id"] for row in page])
        return rows.serialize_predictions(
            page, explained, show_request_context=self.show_request_context()
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
    """``GET predictions/`` and ``GET predictions/{uuid}/``."""

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
        # Otherwise the prediction and its explanations in one query.
        queryset = self.filter_queryset(
            visible_predictions(
                request,
                rows.prediction_with_explanations(store.resolve_alias(), show_request_context=show),
            )
        )
        lookup = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        try:
            found = list(queryset.filter(**{self.lookup_field: lookup}))
        except (TypeError, ValueError, DjangoValidationError):  # as DRF's get_object_or_404
            raise Http404 from None
        if not found:
            raise Http404("No prediction matches the given query.")
        row, explained = rows.split_explanations(found)
        return Response(rows.serialize_predictions([row], explained, show_request_context=show)[0])


class ModelVersionViewSet(_AuditAPIMixin, viewsets.ReadOnlyModelViewSet[ModelVersion]):
    """``GET models/`` and ``GET models/{id}/``."""

    serializer_class = serializers.ModelVersionSerializer
    filter_backends = (DjangoFilterBackend,)
    filterset_class = filters.ModelVersionFilterSet
    pagination_ordering = ("model_name", "version", "id")
    access_log_resource = "models"
    access_log_predictions = False
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[ModelVersion]:
        alias = store.resolve_alias()
        queryset = ModelVersion.objects.using(alias).order_by(*self.pagination_ordering)
        tenants = allowed_tenants(self.request)
        if tenants is not None:
            visible = PredictionEvent.objects.using(alias).filter(
                model=OuterRef("pk"), tenant_id__in=tenants
            )
            queryset = queryset.filter(Exists(visible))
        return queryset


class TraceViewSet(_AuditAPIMixin, viewsets.GenericViewSet[PredictionEvent]):
    """``GET traces/{trace_id}/``: the predictions of one trace, oldest first.

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
