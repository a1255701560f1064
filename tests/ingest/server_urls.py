"""URLs of the ingest server process: the endpoint under ``/otlp/``."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("otlp/", include("ml_audit.ingest.urls"))]
