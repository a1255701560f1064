"""OpenTelemetry for the demo, set up the way a service would: before Django serves anything.

One SDK ``TracerProvider`` (service ``ml-audit-demo``; the resource attribute
``openinference.project.name`` names the Phoenix project), made global; ml_audit adds its span
processor to it at the first prediction, leaving the exporter alone. ``DjangoInstrumentor``
makes every request a server span, so each prediction is a child of its request's span and its
row carries that trace id; the ``traceresponse`` header tells the client which trace it was.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    set_global_response_propagator,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SERVICE_NAME = "ml-audit-demo"

#: With ``keep_spans``: every span the demo ends, as an exporter receives it (``--check``
#: reads them: no applicant id may be on any).
kept = InMemorySpanExporter()


def configure(
    *, otlp_endpoint: str | None, project: str = SERVICE_NAME, keep_spans: bool = False
) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": SERVICE_NAME, "openinference.project.name": project}
        )
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if keep_spans:
        provider.add_span_processor(SimpleSpanProcessor(kept))
    trace.set_tracer_provider(provider)
    set_global_response_propagator(TraceResponsePropagator())  # type: ignore[no-untyped-call]
    DjangoInstrumentor().instrument(tracer_provider=provider)
    return provider
