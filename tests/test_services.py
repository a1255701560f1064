"""The seed-compatible recording API against a real database."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import pytest
from django.core.exceptions import ObjectDoesNotExist
from django.test import override_settings

from ml_audit import store
from ml_audit.exceptions import InvalidRecord, PredictionConflict, PredictionNotFound
from ml_audit.models import Explanation, ModelVersion, PredictionEvent, RequestingActor
from ml_audit.services import (
    ActorPayload,
    attach_explanation,
    record_prediction_event,
    register_model_version,
)

pytestmark = pytest.mark.django_db


def seed_call(**overrides: object) -> PredictionEvent:
    """The reference quickstart call."""
    kwargs: dict[str, object] = {
        "model_name": "fraud_detector",
        "model_version": "1.0.0",
        "features": {"age": 42, "income": 100_000, "email": "user@example.com"},
        "output": {"score": 0.87, "is_fraud": True},
        "decision_outcome": "flagged",
        "confidence": 0.87,
        "actor": ActorPayload(
            actor_type="user",
            actor_id="7",
            tenant_id="acme",
            ip_address="203.0.113.9",
            user_agent="curl/8.0",
        ),
        "environment": "prod",
        "trace_id": "req-123",
        "latency_ms": 12.3,
    }
    kwargs.update(overrides)
    return record_prediction_event(**kwargs)  # type: ignore[arg-type]


def test_seed_quickstart_records_a_redacted_row() -> None:
    event = seed_call()
    row = PredictionEvent.objects.select_related("model", "actor").get(pk=event.pk)
    assert row.features == {"age": 42, "income": 100_000, "email": "*****"}
    assert row.redaction["paths"] == {"features": ["email"]}
    assert row.model.model_name == "fraud_detector"
    assert row.model.version == "1.0.0"
    assert row.actor is not None
    assert (row.actor.actor_type, row.actor.actor_id, row.actor.tenant_id) == ("user", "7", "acme")
    assert row.tenant_id == "acme"
    assert row.client_ip == "203.0.113.9"
    assert row.user_agent == "curl/8.0"
    assert row.correlation_id == "req-123"
    assert len(row.trace_id) == 32  # the prediction span's trace
    assert row.decision_outcome == "flagged"
    assert row.confidence == pytest.approx(0.87)
    assert row.latency_ms == pytest.approx(12.3)
    assert row.environment == "prod"
    assert row.status == "success"
    assert row.id.version == 7
    assert row.prediction_id == str(row.id)
    assert store.verify_event(row)


def test_returned_instance_equals_the_stored_row() -> None:
    event = seed_call()
    row = PredictionEvent.objects.get(pk=event.pk)
    for field in ("prediction_id", "features", "output", "content_hash", "timestamp", "model_id"):
        assert getattr(event, field) == getattr(row, field)


def test_same_prediction_id_same_content_returns_the_existing_row() -> None:
    first = seed_call(prediction_id="txn-1")
    again = seed_call(prediction_id="txn-1", latency_ms=99.0, trace_id="req-999")
    assert again.pk == first.pk
    assert PredictionEvent.objects.filter(prediction_id="txn-1").count() == 1
    assert ModelVersion.objects.count() == 1
    assert RequestingActor.objects.count() == 1


def test_same_prediction_id_different_content_raises_conflict_naming_fields() -> None:
    seed_call(prediction_id="txn-2")
    with pytest.raises(PredictionConflict) as info:
        seed_call(prediction_id="txn-2", decision_outcome="clean", confidence=0.1)
    assert info.value.fields == ("confidence", "decision_outcome")
    assert info.value.prediction_id == "txn-2"
    assert PredictionEvent.objects.filter(prediction_id="txn-2").count() == 1


def test_conflict_creates_no_orphan_model_or_actor_rows() -> None:
    seed_call(prediction_id="txn-3")
    with pytest.raises(PredictionConflict):
        seed_call(
            prediction_id="txn-3",
            model_name="another_model",
            actor=ActorPayload(actor_type="service", actor_id="batch"),
        )
    assert not ModelVersion.objects.filter(model_name="another_model").exists()
    assert not RequestingActor.objects.filter(actor_id="batch").exists()


def test_repeat_actor_keeps_each_events_own_ip_and_user_agent() -> None:
    one = seed_call()
    two = seed_call(
        actor=ActorPayload("user", "7", tenant_id="acme", ip_address="198.51.100.1", user_agent="x")
    )
    assert one.actor_id == two.actor_id
    rows = {r.pk: r for r in PredictionEvent.objects.all()}
    assert rows[one.pk].client_ip == "203.0.113.9"
    assert rows[two.pk].client_ip == "198.51.100.1"
    assert rows[two.pk].user_agent == "x"
    assert RequestingActor.objects.count() == 1


def test_actor_given_as_dict_and_no_actor() -> None:
    event = seed_call(actor={"actor_type": "api_key", "actor_id": "key-1"})
    assert event.actor is not None
    assert event.actor.actor_type == "api_key"
    anonymous = seed_call(actor=None)
    assert anonymous.actor_id is None
    assert anonymous.tenant_id == ""


def test_w3c_trace_id_argument_is_stored_as_trace_id() -> None:
    event = seed_call(trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    row = PredictionEvent.objects.get(pk=event.pk)
    assert row.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert row.correlation_id == ""


def test_failed_prediction_keeps_error_details_redacted() -> None:
    event = seed_call(
        status="failed",
        output=None,
        error_type="ValueError",
        error_message="could not score user@example.com",
    )
    row = PredictionEvent.objects.get(pk=event.pk)
    assert row.status == "failed"
    assert row.output is None
    assert row.error_type == "ValueError"
    assert "user@example.com" not in row.error_message
    assert row.redaction["paths"]["error_message"]


def test_nan_and_numpy_payloads_are_stored_and_read_back() -> None:
    np = pytest.importorskip("numpy")
    event = seed_call(
        features={"x": np.float32(0.25), "v": np.arange(3), "bad": math.nan},
        output={"score": np.float64(0.5), "inf": math.inf},
    )
    row = PredictionEvent.objects.get(pk=event.pk)
    assert row.features == {"x": 0.25, "v": [0, 1, 2], "bad": "NaN"}
    assert row.output == {"score": 0.5, "inf": "Infinity"}
    assert store.verify_event(row)


def test_large_unicode_payload_round_trips_and_verifies() -> None:
    features = {f"feature_{i}": "ü€𝄞 " * 50 for i in range(200)}
    event = seed_call(features=features)
    row = PredictionEvent.objects.get(pk=event.pk)
    assert row.features == features
    assert store.verify_event(row)


def test_invalid_call_writes_nothing() -> None:
    with pytest.raises(InvalidRecord):
        seed_call(confidence=2)
    assert PredictionEvent.objects.count() == 0
    assert ModelVersion.objects.count() == 0


@override_settings(
    ML_AUDIT_REDACTION={
        "ALLOWLIST": ["age", "income", "country", "email"],
        "DENYLIST": ["national_id", "raw_email"],
        "MASK_VALUE": "[redacted]",
    }
)
def test_seed_redaction_setting_keeps_working() -> None:
    event = seed_call(
        features={
            "age": 1,
            "email": "a@b.co",
            "national_id": "X",
            "raw_email": "y",
            "password": "z",
        }
    )
    row = PredictionEvent.objects.get(pk=event.pk)
    assert row.features == {
        "age": 1,
        "email": "a@b.co",
        "national_id": "[redacted]",
        "raw_email": "[redacted]",
        "password": "[redacted]",
    }


@override_settings(ML_AUDIT={"REDACT_PAYLOADS": ["output", "metadata"], "ENVIRONMENT": "staging"})
def test_redact_payloads_and_default_environment_settings() -> None:
    event = seed_call(
        output={"email": "leak@example.com"}, metadata={"api_key": "sk"}, environment=None
    )
    row = PredictionEvent.objects.get(pk=event.pk)
    assert row.output == {"email": "*****"}
    assert row.metadata == {"api_key": "*****"}
    assert row.environment == "staging"


@override_settings(ML_AUDIT={"NAIVE_DATETIME_POLICY": "utc"})
def test_naive_timestamp_policy_setting() -> None:
    event = seed_call(timestamp=dt.datetime(2024, 3, 1, 9, 0))
    assert PredictionEvent.objects.get(pk=event.pk).timestamp == dt.datetime(
        2024, 3, 1, 9, 0, tzinfo=dt.UTC
    )


def test_register_model_version_sets_provenance_and_is_reused() -> None:
    model = register_model_version(
        "fraud_detector",
        "1.0.0",
        framework="sklearn",
        commit_hash="abc123",
        config_snapshot={"C": 1.0},
    )
    event = seed_call()
    assert event.model_id == model.pk
    model.refresh_from_db()
    assert (model.framework, model.commit_hash, model.config_snapshot) == (
        "sklearn",
        "abc123",
        {"C": 1.0},
    )


# ----------------------------------------------------------------------------- explanations


def test_attach_explanation_by_instance_uuid_and_prediction_id() -> None:
    event = seed_call(prediction_id="txn-10")
    by_instance = attach_explanation(event, "shap", {"age": 0.1}, "Age mattered.")
    by_uuid = attach_explanation(event.pk, "shap", {"age": 0.2})
    by_string = attach_explanation("txn-10", "lime", {"age": 0.3})
    by_uuid_string = attach_explanation(str(event.pk), "lime", {"age": 0.4})
    assert [e.revision for e in (by_instance, by_uuid, by_string, by_uuid_string)] == [1, 2, 3, 4]
    assert {e.prediction_id for e in (by_instance, by_uuid, by_string, by_uuid_string)} == {
        event.pk
    }
    assert event.explanation is not None
    assert event.explanation.payload == {"age": 0.4}
    assert event.explanations.count() == 4


def test_prediction_id_that_looks_like_a_uuid_wins_over_a_primary_key() -> None:
    target = seed_call(prediction_id="placeholder")
    lookalike = seed_call(prediction_id=str(target.pk), features={"age": 1})
    explanation = attach_explanation(str(target.pk), "shap", {"age": 1.0})
    assert explanation.prediction_id == lookalike.pk
    own_uuid_id = str(uuid.uuid4())
    other = seed_call(prediction_id=own_uuid_id, features={"age": 2})
    assert attach_explanation(own_uuid_id, "shap", {}).prediction_id == other.pk


def test_identical_reattach_is_a_no_op_and_history_is_kept(exporter: Any) -> None:
    event = seed_call()
    generated = dt.datetime(2024, 2, 2, 2, 2, tzinfo=dt.UTC)
    first = attach_explanation(event, "shap", {"age": 0.5}, "why", generated_at=generated)
    same = attach_explanation(event, "shap", {"age": 0.5}, "why")
    assert same.pk == first.pk
    assert Explanation.objects.count() == 1
    # Only the attach that wrote a revision is traced.
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("ml_audit.explanation shap") == 1
    assert first.generated_at == generated
    newer = attach_explanation(event, "shap", {"age": 0.6}, "why", method_version="0.45")
    assert newer.revision == 2
    history = list(Explanation.objects.filter(prediction=event).order_by("revision"))
    assert [e.payload for e in history] == [{"age": 0.5}, {"age": 0.6}]
    assert all(store.verify_explanation(e) for e in history)
    fetched = PredictionEvent.objects.prefetch_related("explanations").get(pk=event.pk)
    assert fetched.explanation is not None
    assert fetched.explanation.pk == newer.pk


def test_attach_explanation_errors() -> None:
    with pytest.raises(ObjectDoesNotExist):  # PredictionNotFound is one
        attach_explanation("nope", "shap", {})
    with pytest.raises(PredictionNotFound):
        attach_explanation(uuid.uuid4(), "shap", {})
    with pytest.raises(PredictionNotFound):
        attach_explanation(PredictionEvent(), "shap", {})
    with pytest.raises(InvalidRecord):
        attach_explanation(12, "shap", {})  # type: ignore[arg-type]
    event = seed_call()
    with pytest.raises(InvalidRecord) as info:
        attach_explanation(event, "shap", {}, status="bogus")
    assert info.value.field == "status"
    assert Explanation.objects.count() == 0
