"""URLs of the OTLP ingest endpoint: include them under a prefix of your choice, e.g.
``path("otlp/", include("ml_audit.ingest.urls"))`` serves ``POST /otlp/v1/traces`` (an
OpenTelemetry exporter's or Collector's ``otlphttp`` endpoint is then ``https://host/otlp``)."""

from __future__ import annotations

from django.urls import path

from ml_audit.ingest.views import traces

app_name = "ml_audit_ingest"

urlpatterns = [path("v1/traces", traces, name="traces")]
