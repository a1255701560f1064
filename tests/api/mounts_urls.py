"""A URLconf mounting the API twice, under instance namespaces of the project's choosing (for
the API root's links: each mount links to its own endpoints)."""

from django.urls import include, path

urlpatterns = [
    path("first/", include(("ml_audit.api.urls", "ml_audit_api"), namespace="first")),
    path("second/audit/", include(("ml_audit.api.urls", "ml_audit_api"), namespace="second")),
]
