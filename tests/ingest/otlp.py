"""Building OTLP requests as senders build them, and reading the endpoint's answers.

Spans are made by the OpenTelemetry SDK (a private provider) and encoded by the OTLP
exporter's own encoder (``encode_spans``): the protobuf bytes are what
``OTLPSpanExporter`` would send. The JSON form follows the OTLP JSON mapping (hex ids).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.http import HttpResponse
from django.test import Client
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link

URL = "/otlp/v1/traces"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

#: Raw personal data a careless sender puts in its features.
RAW_EMAIL = "jane.doe@example.com"
RAW_CARD = "4111 1111 1111 1111"


def raw_prediction(prediction_id: str, **overrides: Any) -> dict[str, Any]:
    """The ``ml_audit.*`` attributes a sender that does NOT redact writes for a prediction
    (no ``ml_audit.redaction``, no event id): raw e-mail and card number in the features."""
    attributes: dict[str, Any] = {
        "ml_audit.schema_version": 1,
        "ml_audit.prediction_id": prediction_id,
        "ml_audit.timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "ml_audit.model.name": "fraud",
        "ml_audit.model.version": "7",
        "ml_audit.status": "success",
        "ml_audit.actor.type": "user",
        "ml_audit.actor.id": "u-42",
        "ml_audit.actor.tenant_id": "acme",
        "ml_audit.features": json.dumps(
            {"amount": 120.5, "email": RAW_EMAIL, "note": f"paid with {RAW_CARD}"}
        ),
        "ml_audit.output": json.dumps({"score": 0.91}),
        "ml_audit.confidence": 0.91,
        "ml_audit.decision_outcome": "flagged",
    }
    attributes.update(overrides)
    return {k: v for k, v in attributes.items() if v is not None}


def explanation_attributes(prediction_id: str, **overrides: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "ml_audit.prediction_id": prediction_id,
        "ml_audit.explanation.method": "shap",
        "ml_audit.explanation.method_version": "0.45",
        "ml_audit.explanation.status": "success",
        "ml_audit.explanation.summary": f"amount drove the score; contact {RAW_EMAIL}",
        "ml_audit.explanation.payload": json.dumps({"amount": 0.7, "email": 0.1}),
    }
    attributes.update(overrides)
    return {k: v for k, v in attributes.items() if v is not None}


def sdk_spans(
    specs: Sequence[tuple[str, Mapping[str, Any]]], *, links: Sequence[Link] = ()
) -> list[ReadableSpan]:
    """Finished SDK spans named and attributed as given (each a root span of its own trace)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("sender", "1.0")
    for name, attributes in specs:
        tracer.start_span(name, attributes=dict(attributes), links=list(links)).end()
    return list(exporter.get_finished_spans())


def request_of(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    message: ExportTraceServiceRequest = encode_spans(spans)
    return message


def protobuf_body(spans: Sequence[ReadableSpan]) -> bytes:
    return bytes(request_of(spans).SerializeToString())


def json_body(spans: Sequence[ReadableSpan]) -> bytes:
    """The OTLP JSON encoding: lowerCamelCase, hex ids, enums as integers."""
    data = json_format.MessageToDict(request_of(spans), use_integers_for_enums=True)
    for resource_spans in data.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for holder in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if holder.get(key):
                            holder[key] = base64.b64decode(holder[key]).hex()
    return json.dumps(data).encode()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def post(
    client: Client,
    body: bytes,
    *,
    token: str | None,
    content_type: str = PROTOBUF,
    gzipped: bool = False,
    **extra: Any,
) -> HttpResponse:
    headers: dict[str, Any] = dict(extra)
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if gzipped:
        body = gzip.compress(body)
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    send: Any = client.post  # typed for form data; these are raw bodies and WSGI variables
    response: HttpResponse = send(URL, data=body, content_type=content_type, **headers)
    return response


def export_response(response: HttpResponse) -> ExportTraceServiceResponse:
    """The ``ExportTraceServiceResponse`` of a 200, in the response's encoding."""
    assert response.status_code == 200, response.content
    message = ExportTraceServiceResponse()
    if response["Content-Type"] == PROTOBUF:
        message.ParseFromString(response.content)
    else:
        assert response["Content-Type"] == JSON
        json_format.Parse(response.content, message)
    return message


def status_message(response: HttpResponse) -> Status:
    """The ``google.rpc.Status`` of an error response."""
    message = Status()
    if response["Content-Type"] == PROTOBUF:
        message.ParseFromString(response.content)
    else:
        json_format.Parse(response.content, message)
    return message
