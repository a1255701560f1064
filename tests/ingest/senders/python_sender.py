"""A model server outside Django, as a team would write it with the OpenTelemetry Python SDK.

No Django, no ml_audit: it names and attributes its spans by the ``ml_audit`` conventions by
hand, forgets to redact (raw e-mail and card number in the features), traces its own HTTP
handling around each prediction, and exports everything with the SDK's
``BatchSpanProcessor`` and ``OTLPSpanExporter`` (protobuf over HTTP, gzip) to the endpoint.

    python python_sender.py --endpoint http://127.0.0.1:8000/otlp/v1/traces --token mla_...

Prints one JSON object: the ids of what it sent and the exporter's results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

RAW_EMAIL = "jane.doe@example.com"
RAW_CARD = "4111 1111 1111 1111"


class Recording(SpanExporter):
    """The real exporter, with its results kept for the test to check."""

    def __init__(self, inner: OTLPSpanExporter) -> None:
        self.inner = inner
        self.results: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result.name)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--run", required=True, help="prefix of the prediction ids")
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    assert "django" not in sys.modules

    exporter = Recording(
        OTLPSpanExporter(
            endpoint=args.endpoint,
            headers={"Authorization": f"Bearer {args.token}"},
            compression=Compression.Gzip,
            timeout=30,
        )
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "py-scorer"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512))
    tracer = provider.get_tracer("py-scorer", "1.0")

    sent = []
    for i in range(args.count):
        prediction_id = f"{args.run}-{i}"
        with tracer.start_as_current_span("POST /score") as request_span:
            with tracer.start_as_current_span(
                "ml_audit.prediction fraud",
                attributes={
                    "ml_audit.schema_version": 1,
                    "ml_audit.prediction_id": prediction_id,
                    "ml_audit.timestamp": dt.datetime.now(dt.UTC).isoformat(),
                    "ml_audit.model.name": "fraud",
                    "ml_audit.model.version": "py-1",
                    "ml_audit.status": "success",
                    "ml_audit.actor.type": "user",
                    "ml_audit.actor.id": f"user-{i}",
                    "ml_audit.actor.tenant_id": "acme",
                    "ml_audit.features": json.dumps(
                        {"amount": 10.0 * i, "email": RAW_EMAIL, "note": f"card {RAW_CARD}"}
                    ),
                    "ml_audit.output": json.dumps({"score": 0.5}),
                    "ml_audit.confidence": 0.5,
                    "ml_audit.decision_outcome": "review",
                },
            ) as prediction_span:
                context = prediction_span.get_span_context()
            if i == 0:
                tracer.start_span(
                    "ml_audit.explanation shap",
                    attributes={
                        "ml_audit.prediction_id": prediction_id,
                        "ml_audit.explanation.method": "shap",
                        "ml_audit.explanation.payload": json.dumps({"amount": 0.4}),
                        "ml_audit.explanation.summary": f"ask {RAW_EMAIL}",
                    },
                ).end()
            sent.append(
                {
                    "prediction_id": prediction_id,
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_span_id": f"{request_span.get_span_context().span_id:016x}",
                }
            )
    flushed = provider.force_flush(timeout_millis=60_000)
    provider.shutdown()
    print(json.dumps({"sent": sent, "flushed": flushed, "results": exporter.results}))


if __name__ == "__main__":
    main()
