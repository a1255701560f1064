"""Minimal read-only admin registration (no add, change or delete, for superusers too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from ml_audit.models import Explanation, ModelVersion, PredictionEvent, RequestingActor

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin


class ReadOnlyAdmin(_ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
    )
    list_filter = ("status", "environment")
    list_select_related = ("model", "actor")
    search_fields = ("=prediction_id", "=trace_id", "=correlation_id")
    show_full_result_count = False
    ordering = ("-timestamp", "-id")


@admin.register(Explanation)
class ExplanationAdmin(ReadOnlyAdmin):
    list_display = ("prediction", "revision", "method", "status", "generated_at")
    list_select_related = ("prediction",)
    show_full_result_count = False


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "framework", "created_at")
    search_fields = ("name", "version")


@admin.register(RequestingActor)
class RequestingActorAdmin(ReadOnlyAdmin):
    list_display = ("actor_type", "actor_id", "tenant_id", "created_at")
    search_fields = ("=actor_id", "=tenant_id")
