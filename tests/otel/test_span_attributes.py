"""The prediction span's attributes, set without a second cleaning, equal what the SDK's
``set_attributes`` would have made of them, in every case."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import attributes as otel_attributes
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.trace import INVALID_SPAN, Span, SpanContext

from ml_audit.otel import conventions, span_attributes
from ml_audit.otel.span_attributes import set_span_attributes
from tests.factories import redacted

RECORDS = {
    "success": redacted(),
    "failed": redacted(status="failed", error_type="ValueError", output=None, confidence=None),
    "with metadata": redacted(metadata={"user_id": "u-1", "note": "x" * 300}),
}


def encoded(name: str, **options: Any) -> dict[str, Any]:
    return conventions.encode(RECORDS[name], **options)


def both_ways(
    attributes: dict[str, Any],
    limits: SpanLimits | None = None,
    before: dict[str, Any] | None = None,
) -> tuple[SdkSpan, SdkSpan]:
    """The same attributes set on two fresh spans: the fast way and the SDK's way."""
    tracer = TracerProvider(span_limits=limits or SpanLimits()).get_tracer("tests")
    fast, public = tracer.start_span("fast"), tracer.start_span("public")
    assert isinstance(fast, SdkSpan)
    assert isinstance(public, SdkSpan)
    if before:
        fast.set_attributes(before)
        public.set_attributes(before)
    set_span_attributes(fast, attributes)
    public.set_attributes(attributes)
    return fast, public


def same(fast: SdkSpan, public: SdkSpan) -> None:
    assert fast.attributes is not None
    assert public.attributes is not None
    assert list(fast.attributes.items()) == list(public.attributes.items())  # order included
    assert fast.dropped_attributes == public.dropped_attributes


@pytest.mark.parametrize("name", sorted(RECORDS))
@pytest.mark.parametrize("openinference", [True, False])
@pytest.mark.parametrize("export_payloads", [True, False])
def test_encoded_values_need_no_cleaning(
    name: str, openinference: bool, export_payloads: bool
) -> None:
    attributes = encoded(name, openinference=openinference, export_payloads=export_payloads)
    for key, value in attributes.items():
        if isinstance(value, tuple):
            assert all(type(item) is str for item in value), key
        else:
            assert type(value) in (str, int, float, bool), key
    # What the SDK's cleaning makes of them is what they are.
    assert otel_attributes._clean_attribute_value(attributes, None) == attributes


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_without_limits_the_fast_way_cleans_nothing_and_equals_the_sdks(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    attributes = encoded(name, openinference=True)
    tracer = TracerProvider().get_tracer("tests")
    span = tracer.start_span("fast")
    cleaned: list[Any] = []
    real_clean = otel_attributes._clean_attribute_value

    def counting(value: Any, limit: Any) -> Any:
        cleaned.append(value)
        return real_clean(value, limit)

    monkeypatch.setattr(otel_attributes, "_clean_attribute_value", counting)
    set_span_attributes(span, attributes)
    assert cleaned == []
    monkeypatch.undo()
    same(*both_ways(attributes))


@pytest.mark.parametrize(
    ("case", "limits", "before"),
    [
        ("no limits", None, None),
        ("count limit with room", SpanLimits(max_span_attributes=100), None),
        ("count limit without room: evictions", SpanLimits(max_span_attributes=5), None),
        ("no attributes allowed", SpanLimits(max_span_attributes=0), None),
        ("length limit: truncation", SpanLimits(max_attribute_length=16), None),
        ("a key set before", None, {"ml_audit.status": "x", "other": 1}),
        ("other keys set before", None, {"other": 1}),
        ("full after the keys before", SpanLimits(max_span_attributes=20), {"other": 1}),
    ],
)
def test_equal_to_the_sdk_whatever_the_limits(
    case: str, limits: SpanLimits | None, before: dict[str, Any] | None
) -> None:
    same(*both_ways(encoded("with metadata", openinference=True), limits, before))


def test_an_ended_span_is_left_as_the_sdk_leaves_it() -> None:
    tracer = TracerProvider().get_tracer("tests")
    span = tracer.start_span("ended")
    assert isinstance(span, SdkSpan)
    span.set_attribute("kept", 1)
    span.end()
    set_span_attributes(span, encoded("success"))
    assert span.attributes is not None
    assert dict(span.attributes) == {"kept": 1}


def test_other_spans_take_the_public_way() -> None:
    set_span_attributes(INVALID_SPAN, encoded("success"))  # a no-op span: nothing to do, no error

    calls: list[dict[str, Any]] = []

    class Overriding(SdkSpan):
        def set_attributes(self, attributes: Any) -> None:
            calls.append(dict(attributes))
            super().set_attributes(attributes)

    span: Span = Overriding("custom", context=SpanContext(trace_id=1, span_id=1, is_remote=False))
    attributes = encoded("success")
    set_span_attributes(span, attributes)
    assert calls == [attributes]
    assert Overriding not in span_attributes._SDK_SPAN_TYPES
