"""URLs of the read-only API: ``path("api/ml-audit/", include("ml_audit.api.urls"))``.

Names live in the ``ml_audit_api`` namespace: ``ml_audit_api:prediction-list``,
``prediction-detail``, ``model-list``, ``model-detail``, ``trace-detail``.
"""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from ml_audit.api import views

app_name = "ml_audit_api"

# SimpleRouter, not DefaultRouter: no browsable root view with its own (project-wide) permissions.
router = SimpleRouter()
router.register("predictions", views.PredictionEventViewSet, basename="prediction")
router.register("models", views.ModelVersionViewSet, basename="model")
router.register("traces", views.TraceViewSet, basename="trace")

urlpatterns = router.urls
