"""Read-only admin for the audit trail (no add, change or delete, for superusers too).

The prediction detail page shows the redacted features as a table, the output, what was
redacted, the current explanation with a server-rendered SVG chart of its top attributions
(:mod:`ml_audit.charts`), the earlier revisions and a link to the trace in the APM
(``ML_AUDIT['TRACE_URL_TEMPLATE']``). The request context (client IP, user agent, auth context
and the actor) is shown only to users with the ``ml_audit.view_requestingactor`` permission.
Every value is escaped.

Large tables: the change list never runs a full ``COUNT(*)`` of an unfiltered table on
PostgreSQL once the planner's estimate (``pg_class.reltuples``) reaches
:attr:`EstimatedCountPaginator.estimate_threshold`; it shows the estimate instead (filtered
lists are counted exactly). ``show_full_result_count`` is off for the same reason.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ml_audit import charts, paginators
from ml_audit.conf import trace_url
from ml_audit.models import (
    AccessLog,
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
    list_filter = ("model", "decision_outcome", "status", "environment", "tenant_id")
    list_select_related = ("model", "actor")
    date_hierarchy = "timestamp"
    # Exact matches only, so that each stays an index lookup.
    search_fields = ("=prediction_id", "=trace_id", "=actor__actor_id")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-timestamp", "-id")

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


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "framework", "created_at")
    search_fields = ("name", "version")


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
