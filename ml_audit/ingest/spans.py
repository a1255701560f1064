"""The spans of an ``ExportTraceServiceRequest`` that are ``ml_audit`` spans, as Python values.

A span is ours by its name, as :mod:`ml_audit.otel.conventions` names them:
``ml_audit.prediction <model>`` or ``ml_audit.explanation <method>``. Every other span costs
one ``startswith`` and is counted as ignored; only ours have their attributes converted
(``AnyValue`` → ``str``, ``bool``, ``int``, ``float``, ``bytes``, ``list`` or ``dict``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from ml_audit.otel.conventions import EXPLANATION_SPAN_PREFIX, PREDICTION_SPAN_PREFIX

__all__ = ["EXPLANATION", "PREDICTION", "IncomingSpan", "Sorted", "audit_kind", "sort_spans"]

PREDICTION = "prediction"
EXPLANATION = "explanation"


def audit_kind(name: str) -> str | None:
    """``PREDICTION``, ``EXPLANATION`` or None (not an ml_audit span) for a span name."""
    if name.startswith("ml_audit."):
        for prefix, kind in _KINDS:
            if name == prefix or name.startswith(prefix + " "):
                return kind
    return None


_KINDS = ((PREDICTION_SPAN_PREFIX, PREDICTION), (EXPLANATION_SPAN_PREFIX, EXPLANATION))


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingSpan:
    """An ``ml_audit`` span as sent: ids as lower-case hex ("" when absent), times in ns."""

    kind: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]


@dataclasses.dataclass
class Sorted:
    """The request's audit spans in request order, and how many others it carried."""

    audit: list[IncomingSpan]
    ignored: int


def sort_spans(request: ExportTraceServiceRequest) -> Sorted:
    audit: list[IncomingSpan] = []
    ignored = 0
    for span in _spans(request):
        kind = audit_kind(span.name)
        if kind is None:
            ignored += 1
            continue
        audit.append(
            IncomingSpan(
                kind=kind,
                name=span.name,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex(),
                start_time_unix_nano=span.start_time_unix_nano,
                end_time_unix_nano=span.end_time_unix_nano,
                attributes={kv.key: _value(kv.value) for kv in span.attributes},
            )
        )
    return Sorted(audit, ignored)


def _spans(request: ExportTraceServiceRequest) -> Iterator[Span]:
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            yield from scope_spans.spans


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)  # bool_value, int_value, double_value, bytes_value
