"""Predictions as spans: helpers, facade, failures, parenting, explanation links."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ml_audit.exceptions import InvalidRecord
from ml_audit.models import PredictionEvent
from ml_audit.otel.conventions import ATTR
from ml_audit.otel.spans import audit_prediction, prediction_span
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event

pytestmark = pytest.mark.django_db

SECRETS = ("jane@example.com", "4111 1111 1111 1111", "hunter2", "555-867-5309")
FEATURES = {
    "age": 40,
    "email": "jane@example.com",
    "card": "4111 1111 1111 1111",
    "nested": {"password": "hunter2", "notes": ["call 555-867-5309"]},
}


def prediction_spans(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("ml_audit.prediction")]


def assert_no_secret_exported(exporter: InMemorySpanExporter) -> None:
    for span in exporter.get_finished_spans():
        text = json.dumps(dict(span.attributes or {})) + json.dumps(
            [dict(e.attributes or {}) for e in span.events]
        )
        for secret in SECRETS:
            assert secret not in text, (span.name, secret)


def test_context_manager_records_a_redacted_row_and_span(exporter: InMemorySpanExporter) -> None:
    actor = ActorPayload("user", "9", tenant_id="t", ip_address="10.0.0.9")
    with prediction_span(
        model_name="credit", model_version="2", features=FEATURES, actor=actor, mode="sync"
    ) as p:
        p.set_output({"score": 0.3}, confidence=0.3, decision_outcome="approve")
    row = PredictionEvent.objects.get(prediction_id=p.prediction_id)
    (span,) = prediction_spans(exporter)
    assert span.name == "ml_audit.prediction credit"
    assert row.trace_id == f"{span.context.trace_id:032x}"
    assert row.span_id == f"{span.context.span_id:016x}"
    assert row.features["email"] == "*****"
    assert row.decision_outcome == "approve"
    assert row.confidence == pytest.approx(0.3)
    duration_ms = (span.end_time - span.start_time) / 1e6
    assert row.latency_ms == pytest.approx(duration_ms, abs=1e-3)
    assert row.timestamp.timestamp() == pytest.approx(span.start_time / 1e9, abs=1e-5)
    assert span.attributes[ATTR.PREDICTION_ID] == row.prediction_id
    assert json.loads(span.attributes[ATTR.FEATURES]) == row.features
    assert p.event is not None
    assert p.event.pk == row.pk
    assert_no_secret_exported(exporter)


def test_prediction_span_is_a_child_of_the_current_span(exporter: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("app")
    with (
        tracer.start_as_current_span("request") as parent,
        prediction_span(model_name="m", model_version="1", features={}, mode="sync") as p,
    ):
        inner = trace.get_current_span()
        p.set_output(1)
    row = PredictionEvent.objects.get(prediction_id=p.prediction_id)
    assert row.trace_id == f"{parent.get_span_context().trace_id:032x}"
    assert row.parent_span_id == f"{parent.get_span_context().span_id:016x}"
    assert f"{inner.get_span_context().span_id:016x}" == row.span_id


def test_exception_marks_the_prediction_failed_and_is_reraised(
    exporter: InMemorySpanExporter,
) -> None:
    with (
        pytest.raises(ZeroDivisionError),
        prediction_span(model_name="m", model_version="1", features=FEATURES, mode="sync") as p,
    ):
        raise ZeroDivisionError("cannot score jane@example.com")
    row = PredictionEvent.objects.get(prediction_id=p.prediction_id)
    assert row.status == "failed"
    assert row.error_type == "builtins.ZeroDivisionError"
    assert "jane@example.com" not in row.error_message
    (span,) = prediction_spans(exporter)
    assert span.status.status_code is StatusCode.ERROR
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "builtins.ZeroDivisionError"
    assert_no_secret_exported(exporter)


def test_invalid_outcome_is_recorded_as_failed_and_raised(exporter: InMemorySpanExporter) -> None:
    with (
        pytest.raises(InvalidRecord, match="confidence"),
        prediction_span(model_name="m", model_version="1", features={}, mode="sync") as p,
    ):
        p.set_output({"score": 7}, confidence=7)
    row = PredictionEvent.objects.get(prediction_id=p.prediction_id)
    assert row.status == "failed"
    assert row.error_type == "ml_audit.exceptions.InvalidRecord"
    assert len(prediction_spans(exporter)) == 1


def test_invalid_inputs_fail_before_the_model_runs(exporter: InMemorySpanExporter) -> None:
    ran = []
    bad_features: Any = [1, 2]
    with (
        pytest.raises(InvalidRecord, match="features"),
        prediction_span(model_name="m", model_version="1", features=bad_features),
    ):
        ran.append(True)
    assert ran == []
    assert prediction_spans(exporter) == []


def test_decorator_on_a_plain_function(exporter: InMemorySpanExporter) -> None:
    @audit_prediction(
        model_name="pricing",
        model_version="4",
        confidence="p",
        decision_outcome=lambda r: "high" if r["p"] > 0.5 else "low",
        mode="sync",
    )
    def score(features: dict[str, Any], extra: int = 0) -> dict[str, Any]:
        return {"p": 0.75 + extra}

    assert score({"email": "jane@example.com", "x": 1}) == {"p": 0.75}
    row = PredictionEvent.objects.get()
    assert row.features == {"email": "*****", "x": 1}
    assert row.output == {"p": 0.75}
    assert row.confidence == 0.75
    assert row.decision_outcome == "high"
    assert row.model.model_name == "pricing"


def test_decorator_on_a_coroutine_keeps_context_across_awaits(
    exporter: InMemorySpanExporter,
) -> None:
    @audit_prediction(model_name="async_model", model_version="1", mode="sync")
    async def score(features: dict[str, Any]) -> float:
        await asyncio.sleep(0)
        return 0.5

    async def main() -> list[float]:
        return list(await asyncio.gather(*(score({"i": i}) for i in range(5))))

    # async_to_sync, as Django runs async code: thread-sensitive writes come back to this thread.
    assert async_to_sync(main)() == [0.5] * 5
    rows = PredictionEvent.objects.filter(model__model_name="async_model")
    assert sorted(r.features["i"] for r in rows) == [0, 1, 2, 3, 4]
    assert len({r.trace_id for r in rows}) == 5  # each a root span of its own trace


def test_async_with_in_sync_mode_writes_from_a_thread(exporter: InMemorySpanExporter) -> None:
    async def main() -> str:
        async with prediction_span(
            model_name="am", model_version="1", features={"x": 1}, mode="sync"
        ) as p:
            await asyncio.sleep(0)
            p.set_output(2)
        assert p.event is not None
        return p.prediction_id

    prediction_id = async_to_sync(main)()
    assert PredictionEvent.objects.get(prediction_id=prediction_id).output == 2


def test_decorator_records_failures(exporter: InMemorySpanExporter) -> None:
    @audit_prediction(model_name="m", model_version="1", mode="sync")
    def score(features: dict[str, Any]) -> float:
        raise ValueError("model not loaded")

    with pytest.raises(ValueError, match="model not loaded"):
        score({"a": 1})
    assert PredictionEvent.objects.get().status == "failed"


def test_facade_builds_the_same_span(exporter: InMemorySpanExporter) -> None:
    event = record_prediction_event("credit", "2", FEATURES, {"score": 0.1}, confidence=0.1)
    (span,) = prediction_spans(exporter)
    assert span.name == "ml_audit.prediction credit"
    assert event.trace_id == f"{span.context.trace_id:032x}"
    assert span.parent is None  # no current span: a root span
    assert_no_secret_exported(exporter)


def test_facade_w3c_trace_id_parents_the_span_remotely(exporter: InMemorySpanExporter) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    event = record_prediction_event("m", "1", {}, trace_id=trace_id)
    (span,) = prediction_spans(exporter)
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.parent is not None
    assert span.parent.is_remote
    assert event.trace_id == trace_id
    assert event.correlation_id == ""


def test_facade_other_trace_reference_is_a_correlation_id(exporter: InMemorySpanExporter) -> None:
    event = record_prediction_event("m", "1", {}, trace_id="req-abc")
    (span,) = prediction_spans(exporter)
    assert event.correlation_id == "req-abc"
    assert event.trace_id == f"{span.context.trace_id:032x}"
    assert span.attributes[ATTR.CORRELATION_ID] == "req-abc"


def test_explanation_span_is_a_child_of_the_prediction_span(
    exporter: InMemorySpanExporter,
) -> None:
    """Attached outside any span: a (late) child of the ended prediction span, in its trace.
    Attached from another trace, it is linked instead: tests/otel/test_openinference.py."""
    event = record_prediction_event("m", "1", {"a": 1})
    attach_explanation(event, "shap", {"a": 0.2})
    (prediction,) = prediction_spans(exporter)
    (explanation,) = [
        s for s in exporter.get_finished_spans() if s.name == "ml_audit.explanation shap"
    ]
    assert explanation.parent is not None
    assert explanation.context.trace_id == prediction.context.trace_id
    assert explanation.parent.span_id == prediction.context.span_id
    assert not explanation.links
    attributes = dict(explanation.attributes or {})
    assert attributes[ATTR.PREDICTION_ID] == event.prediction_id
    assert attributes[ATTR.EXPLANATION_REVISION] == 1


def test_a_redaction_policy_change_during_the_block_is_applied(
    exporter: InMemorySpanExporter, settings: Any
) -> None:
    """Features are redacted ahead of time with the policy of the moment; a settings change
    before the block ends (a new policy object) makes the helper redact them again."""
    from ml_audit.store import verify_event

    features = {"customer_code": "AB-1234567", "age": 3, "email": "jane@example.com"}
    with prediction_span(model_name="m", model_version="1", features=features, mode="sync") as p:
        settings.ML_AUDIT = {
            **getattr(settings, "ML_AUDIT", {}),
            "REDACTION": {"DENYLIST": ["customer_code"]},
        }
        p.set_output({"s": 1})
    row = PredictionEvent.objects.get(prediction_id=p.prediction_id)
    assert row.features == {"customer_code": "*****", "age": 3, "email": "*****"}
    assert row.redaction["paths"] == {"features": ["customer_code", "email"]}
    assert verify_event(row)
    (span,) = prediction_spans(exporter)
    assert json.loads(span.attributes[ATTR.FEATURES]) == row.features
    # And without a change, the same features keep the code (the old decision is not reused).
    settings.ML_AUDIT = {k: v for k, v in settings.ML_AUDIT.items() if k != "REDACTION"}
    with prediction_span(model_name="m", model_version="1", features=features, mode="sync") as q:
        q.set_output({"s": 1})
    assert PredictionEvent.objects.get(prediction_id=q.prediction_id).features == {
        "customer_code": "AB-1234567",
        "age": 3,
        "email": "*****",
    }


def test_helper_rows_equal_the_general_path(exporter: InMemorySpanExporter) -> None:
    """The fused validate-and-redact walk stores what create -> with_outcome -> redact gives."""
    from ml_audit.conf import audit_settings
    from ml_audit.records import PredictionRecord
    from ml_audit.store import event_to_record, verify_event

    features = {"age": 40.5, "email": "jane@example.com", "note": "call 555-123-4567", "n": 3}
    with prediction_span(model_name="m", model_version="1", features=features, mode="sync") as p:
        p.set_output({"score": 0.25}, confidence=0.25, decision_outcome="ok")
    row = PredictionEvent.objects.get(prediction_id=p.prediction_id)
    assert verify_event(row)
    stored = event_to_record(row)
    general = (
        PredictionRecord.create(
            model_name="m",
            model_version="1",
            features=features,
            prediction_id=p.prediction_id,
            event_id=stored.event_id,
            timestamp=stored.timestamp,
            latency_ms=stored.latency_ms,
            span_id=stored.span_id,
            parent_span_id=stored.parent_span_id,
        )
        .with_outcome(output={"score": 0.25}, confidence=0.25, decision_outcome="ok")
        .redact(audit_settings.redaction_policy, audit_settings.REDACT_PAYLOADS)
        .evolve(trace_id=stored.trace_id, latency_ms=stored.latency_ms)
    )
    assert stored == general
    assert stored.content_hash() == general.content_hash() == row.content_hash
