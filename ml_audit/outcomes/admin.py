"""Admin of outcomes and of the quality of model versions (registered by ``ml_audit.admin``).

- **Outcomes** (``ml_audit`` > Outcomes, ``ml_audit.view_outcome``): read-only like every audit
  table, tenant-scoped and access-logged as the prediction pages are (endpoints
  ``admin-outcomes-list``, ``admin-outcome-detail``; the predictions shown are logged).
  Outcomes are recorded by ``record_outcome`` and ``manage.py ml_audit_outcomes``, not here.
- **Quality** (``admin/ml_audit/outcome/quality/``, linked from the outcome list and from each
  model version in the model-version list): per model version, the table of
  :func:`ml_audit.outcomes.quality.model_quality` by ISO week and its charts
  (:mod:`ml_audit.outcomes.chart`). For users holding ``ml_audit.view_outcome`` and
  ``ml_audit.view_predictionevent``; computed over the predictions of the user's tenants
  (``ML_AUDIT['API_TENANT_RESOLVER']``), and a model version none of whose predictions is
  visible is "not found". Each request is access-logged (endpoint ``admin-model-quality``,
  without prediction ids: the page shows aggregates).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from ml_audit.admin import AccessLoggedAdmin, EstimatedCountPaginator
from ml_audit.api import access
from ml_audit.conf import resolve_alias
from ml_audit.decision_models import Outcome
from ml_audit.models import ModelVersion
from ml_audit.outcomes.chart import quality_charts
from ml_audit.outcomes.quality import model_quality

__all__ = ["QUALITY_PERMISSIONS", "OutcomeAdmin", "quality_link"]

#: What the quality page needs: it aggregates predictions, their outcomes and reviews.
QUALITY_PERMISSIONS = ("ml_audit.view_outcome", "ml_audit.view_predictionevent")
QUALITY_ENDPOINT = "admin-model-quality"
#: Model versions listed on the quality index (by name and version).
LISTED = 500


def quality_link(model: ModelVersion, admin_site: str = "admin") -> str:
    """A link to ``model``'s quality page (the model-version list's "quality" column)."""
    url = reverse(f"{admin_site}:ml_audit_outcome_quality", args=[model.pk])
    return format_html('<a href="{}">quality</a>', url)


@admin.register(Outcome)
class OutcomeAdmin(AccessLoggedAdmin):
    """The outcomes, newest recorded first, and the quality pages (module docstring)."""

    change_list_template = "ml_audit/admin/outcome_change_list.html"
    list_display = ("prediction_ref", "value_text", "observed_at", "source", "recorded_by")
    list_select_related = ("prediction",)
    # The primary key is a UUIDv7: "newest recorded first" through the primary key's index
    # (observed_at has no index of its own).
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    access_log_list_endpoint = "admin-outcomes-list"
    access_log_detail_endpoint = "admin-outcome-detail"
    fields = (
        "prediction",
        "tenant_id",
        "value_json",
        "observed_at",
        "source",
        "recorded_at",
        "recorded_by",
        "idempotency_key",
    )
    readonly_fields = fields

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return access.visible_tenant_rows(request, queryset)

    def access_log_id(self, obj: Any) -> str:
        return str(obj.prediction_id)

    @admin.display(description="prediction", ordering="prediction__prediction_id")
    def prediction_ref(self, obj: Outcome) -> str:
        return obj.prediction.prediction_id

    @admin.display(description="value")
    def value_text(self, obj: Outcome) -> str:
        text = obj.value if isinstance(obj.value, str) else json.dumps(obj.value)
        return text if len(text) <= 80 else text[:79] + "\u2026"

    @admin.display(description="value")
    def value_json(self, obj: Outcome) -> str:
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.value, indent=2, ensure_ascii=False, default=str)
        )

    # ------------------------------------------------------------------ the quality pages

    def get_urls(self) -> list[URLPattern]:
        quality = [
            path(
                "quality/",
                self.admin_site.admin_view(self.quality_index_view),
                name="ml_audit_outcome_quality_index",
            ),
            path(
                "quality/<uuid:model_id>/",
                self.admin_site.admin_view(self.quality_view),
                name="ml_audit_outcome_quality",
            ),
        ]
        for url in quality:
            # Access-logged: not rolled back with an ATOMIC_REQUESTS transaction.
            url.callback._non_atomic_requests = access.EVERY_ALIAS  # type: ignore[attr-defined]
        return quality + super().get_urls()

    def has_quality_permission(self, request: HttpRequest) -> bool:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_active and user.has_perms(QUALITY_PERMISSIONS))

    def _visible_models(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return access.visible_model_versions(
            request, ModelVersion.objects.using(resolve_alias()).order_by("model_name", "version")
        )

    def quality_index_view(self, request: HttpRequest) -> HttpResponse:
        def view() -> HttpResponse:
            if not self.has_quality_permission(request):
                raise PermissionDenied
            models = list(self._visible_models(request)[:LISTED])
            for model in models:
                model.quality_url = reverse(  # type: ignore[attr-defined]
                    f"{self.admin_site.name}:ml_audit_outcome_quality", args=[model.pk]
                )
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Quality by model version",
                "models": models,
                "listed": LISTED,
            }
            return TemplateResponse(request, "ml_audit/admin/quality_index.html", context)

        return self.access_logged(request, QUALITY_ENDPOINT, view, "")

    def quality_view(self, request: HttpRequest, model_id: Any) -> HttpResponse:
        def view() -> HttpResponse:
            if not self.has_quality_permission(request):
                raise PermissionDenied
            model = self._visible_models(request).filter(pk=model_id).first()
            if model is None:
                raise Http404("No model version with this id is visible to you.")
            report = model_quality(model, tenants=access.allowed_tenants(request))
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Quality of {model.model_name} {model.version}",
                "model": model,
                "report": report,
                "weeks": list(reversed(report.weeks)),  # newest first in the table
                "charts": quality_charts(report.weeks),
                "index_url": reverse(f"{self.admin_site.name}:ml_audit_outcome_quality_index"),
            }
            return TemplateResponse(request, "ml_audit/admin/quality.html", context)

        return self.access_logged(request, QUALITY_ENDPOINT, view, "")
