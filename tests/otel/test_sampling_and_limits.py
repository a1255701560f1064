"""The audit never depends on what observability settings do to spans."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, TraceIdRatioBased

from ml_audit.models import PredictionEvent
from ml_audit.otel import setup
from ml_audit.otel.spans import prediction_span
from ml_audit.services import record_prediction_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_pipeline() -> Iterator[Any]:
    def make(**provider_kwargs: object) -> InMemorySpanExporter:
        provider = TracerProvider(**provider_kwargs)  # type: ignore[arg-type]
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        setup.install(provider)
        return exporter

    yield make
    setup.uninstall()


@pytest.mark.parametrize(
    "sampler",
    [
        TraceIdRatioBased(0.0),
        ParentBased(TraceIdRatioBased(0.0)),
        ParentBased(TraceIdRatioBased(0.1)),
    ],
    ids=["ratio-0", "parent-0", "parent-0.1"],
)
def test_every_prediction_is_persisted_whatever_the_sampler(
    make_pipeline: Any, sampler: Sampler
) -> None:
    exporter = make_pipeline(sampler=sampler)
    count = 200
    for i in range(count):
        record_prediction_event("sampled", "1", {"i": i})
    rows = list(PredictionEvent.objects.filter(model__model_name="sampled"))
    assert len(rows) == count
    expected = {
        r.trace_id
        for r in rows
        if sampler.should_sample(None, int(r.trace_id, 16), "x").decision
        is Decision.RECORD_AND_SAMPLE
    }
    exported = {f"{s.context.trace_id:032x}" for s in exporter.get_finished_spans()}
    assert exported == expected
    if "0.1" in sampler.get_description():
        assert 0 < len(exported) < count  # ~10%: the sampler's choice, not ours


def test_children_of_an_unsampled_prediction_stay_unsampled(make_pipeline: Any) -> None:
    exporter = make_pipeline(sampler=ParentBased(TraceIdRatioBased(0.0)))
    app_tracer = setup.get_pipeline().provider.get_tracer("app")
    with prediction_span(model_name="m", model_version="1", features={}, mode="sync") as p:
        with app_tracer.start_as_current_span("model.inference") as inner:
            assert not inner.is_recording()
        p.set_output(1)
    assert PredictionEvent.objects.filter(prediction_id=p.prediction_id).exists()
    assert exporter.get_finished_spans() == ()


def test_sampled_predictions_reach_the_exporter_with_their_children(make_pipeline: Any) -> None:
    exporter = make_pipeline()  # default sampler: ParentBased(ALWAYS_ON)
    app_tracer = setup.get_pipeline().provider.get_tracer("app")
    with prediction_span(model_name="m", model_version="1", features={}, mode="sync") as p:
        with app_tracer.start_as_current_span("model.inference"):
            pass
        p.set_output(1)
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["ml_audit.prediction m", "model.inference"]


def test_attribute_limits_never_cut_the_row(make_pipeline: Any, settings: Any) -> None:
    settings.ML_AUDIT = {"MAX_PAYLOAD_BYTES": 4_194_304}  # above the 1 MiB default
    exporter = make_pipeline(
        span_limits=SpanLimits(max_attribute_length=64, max_span_attributes=10)
    )
    features = {f"feature_{i:04d}": "v" * 1000 for i in range(2000)}  # about 2 MB
    assert len(json.dumps(features)) > 2_000_000
    event = record_prediction_event("limited", "1", features, {"out": "o" * 5000})
    row = PredictionEvent.objects.get(pk=event.pk)
    assert row.features == features
    assert row.output == {"out": "o" * 5000}
    (span,) = exporter.get_finished_spans()
    assert len(span.attributes) <= 10
    assert all(len(str(v)) <= 64 for v in span.attributes.values())


def test_global_provider_is_used_when_none_is_given(exporter: InMemorySpanExporter) -> None:
    pipeline = setup.get_pipeline()
    assert pipeline.provider is trace.get_tracer_provider()
    assert setup.install().processor is pipeline.processor  # idempotent per provider
    assert "MLAuditSampler" in pipeline.tracer.sampler.get_description()
