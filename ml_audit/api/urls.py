"""URLs of the read-only API: ``path("api/ml-audit/", include("ml_audit.api.urls"))``.

Names live in the ``ml_audit_api`` namespace: ``ml_audit_api:api-root`` (the mount point: the
endpoints as absolute URLs), ``prediction-list``, ``prediction-detail``, ``model-list``,
``model-detail``, ``trace-detail``, ``seal-list``, ``seal-detail``, ``prediction-seal``,
``hold-list``, ``hold-detail`` (:mod:`ml_audit.api.trail`), ``prediction-reviews``
(:mod:`ml_audit.api.reviews`, which also takes ``POST``), ``subject-report``
(:mod:`ml_audit.api.subjects`), ``model-quality`` (:mod:`ml_audit.api.quality`), and ``schema``
(the OpenAPI 3
document, only when drf-spectacular is installed: the ``openapi`` extra).

django-ml-audit 0.2.0's names keep working beside these, for the same URLs:
``ml-audit-prediction-list``, ``ml-audit-prediction-detail``, ``ml-audit-model-list`` and
``ml-audit-model-detail`` (its ``DefaultRouter`` basenames; ``api-root`` is the same name).

Every other path below the mount point that ends with a slash is a JSON 404 (``not-found``,
last): mount the API under a prefix of its own, or include it after the project's other URLs,
since nothing after it in the same URLconf level is reached for such a path. A path without
the trailing slash is left to Django (``APPEND_SLASH`` redirects it to the slashed one, which
is then a JSON 404 when it names no endpoint).
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from ml_audit.api import quality, reviews, subjects, trail, views

app_name = views.NAMESPACE

# SimpleRouter, not DefaultRouter: DefaultRouter's root view would take DRF's project-wide
# permission classes; ours (views.ApiRootView) takes ML_AUDIT['API_PERMISSION_CLASSES'].
router = SimpleRouter()
router.register("predictions", views.PredictionEventViewSet, basename="prediction")
router.register("models", views.ModelVersionViewSet, basename="model")
router.register("traces", views.TraceViewSet, basename="trace")
# Tamper evidence and legal holds (ml_audit.api.trail).
router.register("seals", trail.SealViewSet, basename="seal")
router.register("holds", trail.HoldViewSet, basename="hold")

#: 0.2.0's route names, reversed to the same URLs as ours. They come after ours, so a request
#: always resolves to our names (``request.resolver_match.url_name``), and the OpenAPI document
#: leaves them out (``ml_audit.api.schema``).
legacy_router = SimpleRouter()
legacy_router.register(
    "predictions", views.PredictionEventViewSet, basename=views.LEGACY_BASENAMES["prediction"]
)
legacy_router.register(
    "models", views.ModelVersionViewSet, basename=views.LEGACY_BASENAMES["model"]
)

urlpatterns: list[Any] = [
    path("", views.ApiRootView.as_view(), name="api-root"),
    *router.urls,
    re_path(
        rf"^predictions/(?P<pk>{views.UUID_PATTERN})/seal/$",
        trail.PredictionSealView.as_view(),
        name="prediction-seal",
    ),
    # A prediction's reviews, and appending one: the API's one write (ml_audit.api.reviews).
    re_path(
        rf"^predictions/(?P<pk>{views.UUID_PATTERN})/reviews/$",
        reviews.PredictionReviewsView.as_view(),
        name="prediction-reviews",
    ),
    # A data subject's report (ml_audit.api.subjects): JSON, or a printable HTML page.
    re_path(
        rf"^subjects/(?P<subject_ref>{subjects.SUBJECT_REF_REGEX})/report/$",
        subjects.SubjectReportView.as_view(),
        name="subject-report",
    ),
    # The quality of a model version by week (ml_audit.api.quality).
    re_path(
        rf"^models/(?P<pk>{views.UUID_PATTERN})/quality/$",
        quality.ModelQualityView.as_view(),
        name="model-quality",
    ),
]

# Only with drf-spectacular (the ``openapi`` extra); the API works without it.
if find_spec("drf_spectacular") is not None:
    from ml_audit.api.schema import AuditSchemaView

    urlpatterns.append(path("schema/", AuditSchemaView.as_view(), name="schema"))

urlpatterns += legacy_router.urls
# Last: whatever else ends with a slash (predictions/not-a-uuid/, traces/zzz/, foo/).
urlpatterns.append(re_path(r"^.*/$", views.endpoint_not_found, name="not-found"))
