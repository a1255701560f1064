"""Read-only admin for the audit trail (no add, change or delete, for superusers too).

The prediction detail page shows the redacted features as a table, the output, what was
redacted, the current explanation with a server-rendered SVG chart of its top attributions
(:mod:`ml_audit.charts`), the earlier revisions and a link to the trace in the APM
(``ML_AUDIT['TRACE_URL_TEMPLATE']``), and the prediction's reviews under its effective outcome;
appending a review, for users with ``ml_audit.add_review``, is the one write it offers
(:mod:`ml_audit.oversight.admin`). The request context (client IP, user agent, auth context
and the actor) is shown only to users with the ``ml_audit.view_requestingactor`` permission.
Every value is escaped.

Large tables (a million predictions and more), on PostgreSQL. No page of the prediction
change list reads every row:

- Counting: an unfiltered list shows the planner's estimate (``pg_class.reltuples``) once it
  reaches :attr:`EstimatedCountPaginator.estimate_threshold`; a filtered list is counted up to
  :attr:`~ml_audit.paginators.EstimatedCountPaginator.filtered_count_limit` rows, and beyond
  that shows the planner's estimate of its rows. ``show_full_result_count`` is off.
- Search: exact prediction id, trace id (32 hex digits, any case) or actor id, each an index
  lookup (:meth:`PredictionEventAdmin.get_search_results`).
- Outcome, environment and tenant filters list the values of the latest
  :attr:`RecentValuesFilter.recent` predictions (listing every value ever stored would read the
  whole table); any other value is filtered by its URL parameter, and a selected value is
  always listed.
- The date drill-down offers every year, month or day between the first and the last matching
  prediction (both found through the timestamp index), not only the periods that hold
  predictions, which would again read every matching row.
- No facet counts (``show_facets`` is ``NEVER``): they count every matching row per choice.

As strict as the REST API (:mod:`ml_audit.api.access` holds the rules both apply):

- Tenant scope: every admin here reads through ``get_queryset`` scoped by
  ``ML_AUDIT['API_TENANT_RESOLVER']`` (called with the admin's request): predictions of the
  allowed tenants, their explanations, the model versions and actors that have one of them, and
  the access-log rows of requests scoped within them. The change list, its filters' choices,
  its counts, its date drill-down, search and the change view (``get_object``) all start from
  that queryset; another tenant's row is "not found", exactly like a missing one.
- Field permissions: without ``ml_audit.view_requestingactor`` the request context of a
  prediction (client IP, user agent, auth context, and the actor) is not shown, and no URL
  lookup may name ``client_ip``, ``user_agent`` or ``auth_context``, on any of these admins
  (``?client_ip=...``, ``?auth_context__token_id__startswith=...`` or through a relation,
  ``?prediction__user_agent=...``): a 400 whatever the value, so row counts tell nothing.
  Lookups through a reverse relation (``?predictions=...`` on model versions) and regular
  expressions (``__regex``, ``__iregex``) are refused too.
- Values that cannot be compared in SQL (a NUL character, an address that is no IP address for
  an IP field, a date the drill-down cannot bound such as year 9999) are the admin's "invalid
  lookup" redirect (``?e=1``), never a database error.
- Access log: every request of the prediction and explanation change lists and change views is
  recorded as an :class:`~ml_audit.models.AccessLog` row, as API reads are (endpoints
  ``admin-predictions-list``, ``admin-prediction-detail``, ``admin-explanations-list``,
  ``admin-explanation-detail``): the user, path and query, the status, and the UUIDs of the
  predictions shown (for explanations, the predictions they explain), refused requests
  included. ``ML_AUDIT['API_ACCESS_LOG'] = False`` turns it off, as for the API. The row is
  written once the page is rendered, before it is sent; if it cannot be written, the page is
  not sent.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import (
    FieldDoesNotExist,
    PermissionDenied,
    SuspiciousOperation,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_ipv46_address
from django.db import DataError, NotSupportedError, models
from django.db.models import Max, Min, Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.template.loader import render_to_string
from django.template.response import SimpleTemplateResponse
from django.urls import URLPattern
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ml_audit import charts, paginators, records
from ml_audit.api import access
from ml_audit.conf import audit_settings, trace_url
from ml_audit.models import (
    AccessLog,
    AppendOnlyQuerySet,
    Explanation,
    ModelVersion,
    PredictionEvent,
    RequestingActor,
)

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin

__all__ = [
    "AccessLogAdmin",
    "AccessLoggedAdmin",
    "AuditChangeList",
    "EstimatedCountPaginator",
    "ExplanationAdmin",
    "ModelVersionAdmin",
    "PredictionEventAdmin",
    "ReadOnlyAdmin",
    "RecentValuesFilter",
    "RequestingActorAdmin",
    "ScopedAdmin",
    "trace_url",
]

REQUEST_CONTEXT_PERMISSION = access.REQUEST_CONTEXT_PERMISSION

logger = logging.getLogger("ml_audit.admin")


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


class EstimatedCountPaginator(paginators.EstimatedCountPaginator):
    """The change lists' paginator: estimated counts from 100,000 rows (see the module
    docstring and :class:`ml_audit.paginators.EstimatedCountPaginator`)."""

    estimate_threshold = 100_000


class ReadOnlyAdmin(_ModelAdmin):
    """No add, change or delete, for superusers too; no bulk delete action."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class AuditChangeList(ChangeList):
    """Django's change list, whose bad lookup values are "invalid lookup" (the ``?e=1``
    redirect) rather than server errors, and whose page of rows is read when it is built (the
    access log records it; the template iterates the same list: no other query)."""

    def get_filters(self, request: HttpRequest) -> Any:
        try:
            return super().get_filters(request)
        except (ValueError, OverflowError) as exc:  # the drill-down's bound after 9999-12-31
            raise IncorrectLookupParameters(exc) from exc

    def get_results(self, request: HttpRequest) -> None:
        try:
            super().get_results(request)
            self.result_list = list(self.result_list)
        except (
            ValueError,
            OverflowError,
            TypeError,
            DjangoValidationError,
            DataError,
            NotSupportedError,
        ) as exc:
            # A value compiled into SQL that the database (or its adapter) cannot take; the
            # lookups themselves were checked by ScopedAdmin.lookup_allowed.
            raise IncorrectLookupParameters(exc) from exc


#: Lookups an admin URL may not use: a regular expression costs a scan of every row, and one
#: the database cannot compile is a database error.
REFUSED_LOOKUPS = frozenset({"regex", "iregex"})
#: Lookups that compare an IP address field as an address (others compare its text).
_IP_VALUE_LOOKUPS = frozenset({"exact", "gt", "gte", "lt", "lte", "in", "range"})


class ScopedAdmin(ReadOnlyAdmin):
    """A read-only admin that is tenant-scoped (:meth:`scope`) and refuses URL lookups on fields
    the user may not see (see the module docstring)."""

    show_facets = admin.ShowFacets.NEVER

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The rows of ``queryset`` that ``request`` may read."""
        return queryset

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.scope(request, super().get_queryset(request))

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AuditChangeList

    def hidden_fields(self, request: HttpRequest | None) -> frozenset[tuple[type[Any], str]]:
        """``(model, field name)`` pairs ``request``'s user may not see."""
        user = getattr(request, "user", None)
        if access.can_view_request_context(user):
            return frozenset()
        return frozenset((PredictionEvent, name) for name in access.REQUEST_CONTEXT_FIELDS)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if "\x00" in lookup or "\x00" in str(value):
            raise IncorrectLookupParameters("A NUL character cannot be compared in SQL.")
        parts = lookup.split(LOOKUP_SEP)
        if REFUSED_LOOKUPS.intersection(parts):
            return False
        hidden = self.hidden_fields(request)
        model: Any = self.model
        field: Any = None
        rest: Sequence[str] = ()
        for index, part in enumerate(parts):
            try:
                field = model._meta.get_field(part)
            except FieldDoesNotExist:
                rest = parts[index:]  # transforms and lookups (or a name the filter refuses)
                break
            if field.auto_created and not field.concrete:  # a reverse relation
                return False
            if (model, field.name) in hidden:
                return False
            if not field.is_relation or field.related_model is None:
                rest = parts[index + 1 :]
                break
            model = field.related_model
        if isinstance(field, models.GenericIPAddressField):
            _check_ip_values(rest, value)
        return bool(super().lookup_allowed(lookup, value, request))


def _check_ip_values(rest: Sequence[str], value: str) -> None:
    """An IP field compared as an address takes addresses: PostgreSQL's ``inet`` refuses
    anything else inside the query."""
    lookup = rest[-1] if rest else "exact"
    if len(rest) > 1 or lookup not in _IP_VALUE_LOOKUPS:
        return
    values = value.split(",") if lookup in ("in", "range") else [value]
    for item in values:
        try:
            validate_ipv46_address(item)
        except DjangoValidationError as exc:
            raise IncorrectLookupParameters(exc) from exc


def _error_status(exc: BaseException) -> int:
    """The status Django answers an exception of a view with."""
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, SuspiciousOperation):
        return 400
    if isinstance(exc, Http404):
        return 404
    return 500


class AccessLoggedAdmin(ScopedAdmin):
    """A :class:`ScopedAdmin` whose change-list and change-view requests are access-logged as
    API reads are (see the module docstring), outside any ``ATOMIC_REQUESTS`` transaction."""

    #: ``AccessLog.endpoint`` of a change-list request and of a change-view request.
    access_log_list_endpoint = ""
    access_log_detail_endpoint = ""

    def access_log_id(self, obj: Any) -> str:
        """The prediction UUID that showing ``obj`` reveals."""
        return str(obj.pk)

    def get_urls(self) -> list[URLPattern]:
        urls = super().get_urls()
        info = self.opts.app_label, self.opts.model_name
        logged = {"{}_{}_changelist".format(*info), "{}_{}_change".format(*info)}
        for url in urls:
            if url.name in logged:
                # Not wrapped in an ATOMIC_REQUESTS transaction: the access-log row of a
                # refused request would be rolled back with it.
                url.callback._non_atomic_requests = access.EVERY_ALIAS  # type: ignore[attr-defined]
        return urls

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        view = super().changelist_view
        return self.access_logged(
            request, self.access_log_list_endpoint, lambda: view(request, extra_context), "cl"
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        view = super().change_view
        return self.access_logged(
            request,
            self.access_log_detail_endpoint,
            lambda: view(request, object_id, form_url, extra_context),
            "original",
        )

    def access_logged(
        self,
        request: HttpRequest,
        endpoint: str,
        view: Callable[[], HttpResponse],
        shown: str,
    ) -> HttpResponse:
        """``view()``'s response, access-logged as ``endpoint``; ``shown`` names the context
        variable holding what the page shows (a change list, or one object)."""
        if not audit_settings.API_ACCESS_LOG:
            return view()
        try:
            response = view()
        except Exception as exc:
            try:
                self.record_access(request, endpoint, _error_status(exc), [])
            except Exception:
                logger.exception("The access log row of a failed admin request was not written.")
            raise
        ids: list[str] = []
        if request.method in ("GET", "HEAD") and 200 <= response.status_code < 300:
            context = getattr(response, "context_data", None) or {}
            found = context.get(shown)
            rows = [found] if shown == "original" else getattr(found, "result_list", [])
            ids = [self.access_log_id(row) for row in rows if row is not None]
        if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:

            def after_rendering(rendered: HttpResponseBase) -> None:
                self.record_access(request, endpoint, rendered.status_code, ids)

            response.add_post_render_callback(after_rendering)
        else:
            self.record_access(request, endpoint, response.status_code, ids)
        return response

    def record_access(
        self, request: HttpRequest, endpoint: str, status_code: int, ids: list[str]
    ) -> None:
        access.record_access(
            request,
            user=getattr(request, "user", None),
            endpoint=endpoint,
            status_code=status_code,
            returned_ids=ids,
            result_count=len(ids),
        )


class RecentValuesFilter(admin.SimpleListFilter):
    """Filter on one text field, offering the values of the latest :attr:`recent` predictions.

    Any value can be filtered by the URL parameter (``?decision_outcome=review``); the selected
    one is always listed. Subclasses set ``parameter_name`` (the field) and ``title``; the
    fields of every such filter of a change list are read in one query (:attr:`fields`).
    """

    recent = 10_000
    #: The fields read together for the filters of one request.
    fields: tuple[str, ...] = ("decision_outcome", "environment", "tenant_id")

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = set(_recent_values(request, model_admin, self.fields, self.recent)[self.field])
        selected = self.value()
        if selected is not None:
            values.add(selected)
        return [(value, value or "(empty)") for value in sorted(values)]

    @property
    def field(self) -> str:
        return str(self.parameter_name)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(**{self.field: value})


_RECENT_ATTR = "_ml_audit_recent_values"


def _recent_values(
    request: HttpRequest, model_admin: Any, fields: tuple[str, ...], recent: int
) -> dict[str, set[str]]:
    """The distinct values of ``fields`` among the latest ``recent`` rows, read once per request
    (one query through the timestamp index)."""
    key = (fields, recent)
    cached: dict[Any, dict[str, set[str]]] = request.__dict__.setdefault(_RECENT_ATTR, {})
    if key not in cached:
        latest = model_admin.get_queryset(request).order_by("-timestamp", "-id")
        rows = list(latest.values_list(*fields)[:recent])
        cached[key] = {field: {row[i] for row in rows} for i, field in enumerate(fields)}
    return cached[key]


class _DecisionOutcomeFilter(RecentValuesFilter):
    title = "decision outcome"
    parameter_name = "decision_outcome"


class _EnvironmentFilter(RecentValuesFilter):
    title = "environment"
    parameter_name = "environment"


class _TenantFilter(RecentValuesFilter):
    title = "tenant"
    parameter_name = "tenant_id"


class _ModelFilter(admin.RelatedFieldListFilter):
    """The model filter: every model version for an unscoped user (a small table), only those
    with a visible prediction for a tenant-scoped one."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> Any:
        if access.allowed_tenants(request) is None:
            return super().field_choices(field, request, model_admin)
        versions = access.visible_model_versions(request, ModelVersion._default_manager.all())
        ordering = self.field_admin_ordering(field, request, model_admin)
        if ordering:
            versions = versions.order_by(*ordering)
        return [(version.pk, str(version)) for version in versions]

    def has_output(self) -> bool:
        # Django leaves out a filter with a single choice, and with it the selected value,
        # which then filters nothing: a selected model always filters.
        return bool(self.used_parameters) or bool(super().has_output())


_PERIOD_KINDS = ("year", "month", "day")


class _PeriodsQuerySet(AppendOnlyQuerySet[Any]):
    """The change list's queryset: ``datetimes()`` (the date drill-down) gives every period
    between the first and the last row, found through the index, instead of a
    ``SELECT DISTINCT`` over every row."""

    def datetimes(  # type: ignore[override]
        self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None, **kwargs: Any
    ) -> list[dt.datetime]:
        if kind not in _PERIOD_KINDS or kwargs:
            return list(super().datetimes(field_name, kind, order, tzinfo, **kwargs))  # type: ignore[arg-type]
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        first, last = bounds["first"], bounds["last"]
        if first is None or last is None:
            return []
        zone = tzinfo or (timezone.get_current_timezone() if timezone.is_aware(first) else None)
        if zone is not None:
            first, last = first.astimezone(zone), last.astimezone(zone)
        periods = _periods(first.date(), last.date(), kind)
        starts = [dt.datetime(day.year, day.month, day.day, tzinfo=zone) for day in periods]
        return starts[::-1] if order == "DESC" else starts


def _periods(first: dt.date, last: dt.date, kind: str) -> list[dt.date]:
    """The first day of every ``kind`` period from ``first``'s to ``last``'s, in order."""
    if kind == "day":
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    if kind == "month":
        months = (last.year - first.year) * 12 + last.month - first.month
        return [
            dt.date(first.year + (first.month - 1 + n) // 12, (first.month - 1 + n) % 12 + 1, 1)
            for n in range(months + 1)
        ]
    return [dt.date(year, 1, 1) for year in range(first.year, last.year + 1)]


@admin.register(PredictionEvent)
class PredictionEventAdmin(AccessLoggedAdmin):
    list_display = (
        "prediction_id",
        "timestamp",
        "model",
        "decision_outcome",
        "confidence",
        "status",
        "tenant_id",
        "environment",
    )
    list_filter = (
        ("model", _ModelFilter),
        _DecisionOutcomeFilter,
        "status",
        _EnvironmentFilter,
        _TenantFilter,
    )
    list_select_related = ("model", "actor")
    date_hierarchy = "timestamp"
    # What get_search_results matches (exactly, each through an index).
    search_fields = ("=prediction_id", "=trace_id", "=actor__actor_id")
    search_help_text = "An exact prediction id, trace id or actor id."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-timestamp", "-id")

    access_log_list_endpoint = "admin-predictions-list"
    access_log_detail_endpoint = "admin-prediction-detail"

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return access.visible_predictions(request, queryset)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PredictionEvent]:
        queryset = super().get_queryset(request)
        return _PeriodsQuerySet(self.model, query=queryset.query, using=queryset.db)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[PredictionEvent], search_term: str
    ) -> tuple[QuerySet[PredictionEvent], bool]:
        """Exact matches on the prediction id, the trace id (any case) or the actor id.

        Django's ``=field`` search compares ``UPPER()`` of each column, which no index serves;
        here each term is an index lookup: the unique prediction id, the trace id index, and
        the actors' identity index (every actor type, that actor id).
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        if "\x00" in term:  # no stored id holds one, and PostgreSQL cannot compare it
            return queryset.none(), False
        # Read first (a handful of ids): as a subquery inside the OR, the planner would scan
        # the whole table instead of combining the three indexes.
        actors = list(
            RequestingActor.objects.using(queryset.db)
            .filter(actor_type__in=RequestingActor.ActorType.values, actor_id=term)
            .values_list("pk", flat=True)
        )
        matches = Q(prediction_id=term) | Q(actor_id__in=actors)
        if records.is_w3c_trace_id(term.lower()):
            matches |= Q(trace_id=term.lower())
        return queryset.filter(matches), False

    base_fieldsets: Any = (
        (
            None,
            {
                "fields": (
                    "prediction_id",
                    "timestamp",
                    "model",
                    "status",
                    "decision_outcome",
                    "confidence",
                    "latency_ms",
                    "environment",
                    "tenant_id",
                    "subject",
                    "trace_link",
                    "correlation_id",
                )
            },
        ),
        ("Features (redacted)", {"fields": ("features_table",)}),
        ("Output", {"fields": ("output_json",)}),
        ("Redaction", {"fields": ("redaction_summary",)}),
        ("Explanation", {"fields": ("explanation_panel",)}),
        (
            "Error and integrity",
            {
                "fields": ("error_type", "error_message", "metadata_json", "content_hash"),
                "classes": ("collapse",),
            },
        ),
    )
    request_context_fieldset: Any = (
        "Request context",
        {"fields": ("actor", "client_ip", "user_agent", "auth_context_json")},
    )

    #: Which seal covers the prediction and whether it verifies (ml_audit.sealing.admin), for
    #: users who may see seals.
    seal_fieldset: Any = ("Seal", {"fields": ("seal_status",)})

    def get_fieldsets(self, request: HttpRequest, obj: PredictionEvent | None = None) -> Any:
        fieldsets = list(self.base_fieldsets)
        if access.can_view_request_context(request.user):
            fieldsets.insert(1, self.request_context_fieldset)
        if obj is not None:  # the reviews, and the form that appends one (ml_audit.oversight)
            from ml_audit.oversight.admin import reviews_fieldset

            fieldsets.append(reviews_fieldset(request))
        if obj is not None and request.user.has_perm("ml_audit.view_seal"):
            fieldsets.append(self.seal_fieldset)
        return fieldsets

    def get_readonly_fields(
        self, request: HttpRequest, obj: PredictionEvent | None = None
    ) -> list[str]:
        return [
            name for _, options in self.get_fieldsets(request, obj) for name in options["fields"]
        ]

    @admin.display(description="Trace")
    def trace_link(self, obj: PredictionEvent) -> str:
        url = trace_url(obj.trace_id)
        if url is None:
            return obj.trace_id or "-"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">View trace {}</a>',
            url,
            obj.trace_id,
        )

    @admin.display(description="Subject")
    def subject(self, obj: PredictionEvent) -> str:
        """The data subject's pseudonymous reference (never an identifier), or "-"."""
        if not obj.subject_ref:
            return "-"
        return format_html(
            '<code title="a pseudonym: it links to a person only through the subject key '
            'table, and to no one once the subject is forgotten">{}</code>',
            obj.subject_ref,
        )

    @admin.display(description="Features")
    def features_table(self, obj: PredictionEvent) -> SafeString:
        features = obj.features if isinstance(obj.features, dict) else {"": obj.features}
        rows = [(str(key), _cell(value)) for key, value in features.items()]
        return render_to_string("ml_audit/admin/features_table.html", {"rows": rows})

    @admin.display(description="Output")
    def output_json(self, obj: PredictionEvent) -> str:
        return format_html("<pre>{}</pre>", _pretty_json(obj.output))

    @admin.display(description="Metadata")
    def metadata_json(self, obj: PredictionEvent) -> str:
        return format_html("<pre>{}</pre>", _pretty_json(obj.metadata))

    @admin.display(description="Auth context")
    def auth_context_json(self, obj: PredictionEvent) -> str:
        return format_html("<pre>{}</pre>", _pretty_json(obj.auth_context))

    @admin.display(description="Redacted")
    def redaction_summary(self, obj: PredictionEvent) -> SafeString:
        redaction = obj.redaction if isinstance(obj.redaction, dict) else {}
        paths = redaction.get("paths") or {}
        rows = (
            [
                (str(payload), [str(p) for p in payload_paths])
                for payload, payload_paths in paths.items()
            ]
            if isinstance(paths, dict)
            else []
        )
        return render_to_string(
            "ml_audit/admin/redaction.html", {"policy": redaction.get("policy"), "paths": rows}
        )

    @admin.display(description="Reviews")
    def reviews_panel(self, obj: PredictionEvent) -> SafeString:
        from ml_audit.oversight.admin import reviews_panel

        return reviews_panel(obj)

    @admin.display(description="Add a review")
    def review_form_panel(self, obj: PredictionEvent) -> SafeString:
        from ml_audit.oversight.admin import review_form_panel

        return review_form_panel(obj, self.admin_site.name)

    def get_urls(self) -> list[URLPattern]:
        from ml_audit.oversight.admin import review_urls

        return [*review_urls(self), *super().get_urls()]  # ahead of the "<id>/" catch-all

    @admin.display(description="Seal")
    def seal_status(self, obj: PredictionEvent) -> SafeString:
        from ml_audit.sealing.admin import seal_panel

        return seal_panel(obj, self.admin_site.name)

    @admin.display(description="Current explanation")
    def explanation_panel(self, obj: PredictionEvent) -> SafeString:
        revisions = list(obj.explanations.select_related("reason_codes").order_by("-revision"))
        current = revisions[0] if revisions else None
        context: dict[str, Any] = {"current": current, "earlier": revisions[1:]}
        if current is not None:
            # The reason codes derived from this revision (ml_audit.reasons), if any.
            codes = getattr(current, "reason_codes", None)  # a reverse one-to-one
            context["reason_codes"] = None if codes is None else codes.codes
            context["chart"] = charts.attribution_chart(current.payload)
            context["payload_json"] = _pretty_json(current.payload)
        return render_to_string("ml_audit/admin/explanation.html", context)


@admin.register(Explanation)
class ExplanationAdmin(AccessLoggedAdmin):
    list_display = ("prediction", "revision", "method", "status", "generated_at")
    list_select_related = ("prediction",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    access_log_list_endpoint = "admin-explanations-list"
    access_log_detail_endpoint = "admin-explanation-detail"

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return access.visible_explanations(request, queryset)

    def access_log_id(self, obj: Any) -> str:
        return str(obj.prediction_id)


#: 0.2.0's (misspelt) name of the explanation admin, kept for code that subclasses it.
explanationnAdmin = ExplanationAdmin


@admin.register(ModelVersion)
class ModelVersionAdmin(ScopedAdmin):
    list_display = ("model_name", "version", "framework", "is_active", "created_at", "quality")
    search_fields = ("model_name", "version")

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return access.visible_model_versions(request, queryset)

    @admin.display(description="quality")
    def quality(self, obj: ModelVersion) -> str:
        """A link to the version's quality page (:mod:`ml_audit.outcomes.admin`)."""
        from ml_audit.outcomes.admin import quality_link

        return quality_link(obj, self.admin_site.name)


@admin.register(RequestingActor)
class RequestingActorAdmin(ScopedAdmin):
    list_display = ("actor_type", "actor_id", "tenant_id", "created_at")
    search_fields = ("=actor_id", "=tenant_id")

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return access.visible_actors(request, queryset)


@admin.register(AccessLog)
class AccessLogAdmin(ScopedAdmin):
    list_display = ("accessed_at", "username", "endpoint", "status_code", "result_count")
    list_filter = ("endpoint", "status_code")
    date_hierarchy = "accessed_at"
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-accessed_at", "-id")

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return access.visible_access_log(request, queryset)


# The ingest endpoint's credentials: an admin that writes, so it lives with the endpoint.
from ml_audit.ingest import admin as _ingest_admin  # noqa: E402, F401

# Outcomes (read-only) and the quality of each model version.
from ml_audit.outcomes import admin as _outcomes_admin  # noqa: E402, F401

# Legal holds (adding a hold or a release is the one write) and purge records.
from ml_audit.retention import admin as _retention_admin  # noqa: E402, F401

# Seals: the Trail integrity page (read-only) and each seal's page.
from ml_audit.sealing import admin as _sealing_admin  # noqa: E402, F401

# Subject erasures (read-only): who forgot which subject, when and why.
from ml_audit.subjects import admin as _subjects_admin  # noqa: E402, F401
