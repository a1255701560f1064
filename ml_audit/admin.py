"""Read-only admin for the audit trail (no add, change or delete, for superusers too).

The prediction detail page shows the redacted features as a table, the output, what was
redacted, the current explanation with a server-rendered SVG chart of its top attributions
(:mod:`ml_audit.charts`), the earlier revisions and a link to the trace in the APM
(``ML_AUDIT['TRACE_URL_TEMPLATE']``). The request context (client IP, user agent, auth context
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
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Max, Min, Q, QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ml_audit import charts, paginators, records
from ml_audit.conf import trace_url
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
    "EstimatedCountPaginator",
    "ExplanationAdmin",
    "ModelVersionAdmin",
    "PredictionEventAdmin",
    "ReadOnlyAdmin",
    "RecentValuesFilter",
    "RequestingActorAdmin",
    "trace_url",
]

REQUEST_CONTEXT_PERMISSION = "ml_audit.view_requestingactor"


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
class PredictionEventAdmin(ReadOnlyAdmin):
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
        "model",
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

    def get_fieldsets(self, request: HttpRequest, obj: PredictionEvent | None = None) -> Any:
        fieldsets = list(self.base_fieldsets)
        if request.user.has_perm(REQUEST_CONTEXT_PERMISSION):
            fieldsets.insert(1, self.request_context_fieldset)
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

    @admin.display(description="Current explanation")
    def explanation_panel(self, obj: PredictionEvent) -> SafeString:
        revisions = list(obj.explanations.order_by("-revision"))
        current = revisions[0] if revisions else None
        context: dict[str, Any] = {"current": current, "earlier": revisions[1:]}
        if current is not None:
            context["chart"] = charts.attribution_chart(current.payload)
            context["payload_json"] = _pretty_json(current.payload)
        return render_to_string("ml_audit/admin/explanation.html", context)


@admin.register(Explanation)
class ExplanationAdmin(ReadOnlyAdmin):
    list_display = ("prediction", "revision", "method", "status", "generated_at")
    list_select_related = ("prediction",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator


#: 0.2.0's (misspelt) name of the explanation admin, kept for code that subclasses it.
explanationnAdmin = ExplanationAdmin


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("model_name", "version", "framework", "is_active", "created_at")
    search_fields = ("model_name", "version")


@admin.register(RequestingActor)
class RequestingActorAdmin(ReadOnlyAdmin):
    list_display = ("actor_type", "actor_id", "tenant_id", "created_at")
    search_fields = ("=actor_id", "=tenant_id")


@admin.register(AccessLog)
class AccessLogAdmin(ReadOnlyAdmin):
    list_display = ("accessed_at", "username", "endpoint", "status_code", "result_count")
    list_filter = ("endpoint", "status_code")
    date_hierarchy = "accessed_at"
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-accessed_at", "-id")
