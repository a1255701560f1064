"""URLs of the read-only API: ``path("api/ml-audit/", include("ml_audit.api.urls"))``.

Names live in the ``ml_audit_api`` namespace: ``ml_audit_api:prediction-list``,
``prediction-detail``, ``model-list``, ``model-detail``, ``trace-detail``, and ``schema`` (the
OpenAPI 3 document, only when drf-spectacular is installed: the ``openapi`` extra).
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from django.urls import path
from rest_framework.routers import SimpleRouter

from ml_audit.api import views

app_name = "ml_audit_api"

# SimpleRouter, not DefaultRouter: no browsable root view with its own (project-wide) permissions.
router = SimpleRouter()
router.register("predictions", views.PredictionEventViewSet, basename="prediction")
router.register("models", views.ModelVersionViewSet, basename="model")
router.register("traces", views.TraceViewSet, basename="trace")

urlpatterns: list[Any] = list(router.urls)

# Only with drf-spectacular (the ``openapi`` extra); the API works without it.
if find_spec("drf_spectacular") is not None:
    from ml_audit.api.schema import AuditSchemaView

    urlpatterns.append(path("schema/", AuditSchemaView.as_view(), name="schema"))
