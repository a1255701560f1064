"""Hostile arguments of the recording API: each is refused cleanly (``InvalidRecord`` naming the
field, nothing written) or recorded correctly; no other exception escapes, nothing hangs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

import pytest

from ml_audit.exceptions import InvalidRecord, MLAuditError, PredictionNotFound
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.otel.spans import prediction_span
from ml_audit.services import attach_explanation, record_prediction_event

pytestmark = pytest.mark.django_db

EDGE_OF_TIME = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))
END_OF_TIME = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-14)))


@dataclasses.dataclass
class Node:
    child: Any = None


def cyclic() -> Node:
    node = Node()
    node.child = Node(child=node)
    return node


def deep(levels: int) -> Node:
    node = Node()
    for _ in range(levels):
        node = Node(child=node)
    return node


def record(**overrides: Any) -> PredictionEvent:
    arguments: dict[str, Any] = {"model_name": "m", "model_version": "1", "features": {"x": 1}}
    arguments.update(overrides)
    return record_prediction_event(**arguments)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"actor": {"actor_type": "user"}}, "actor.actor_id"),
        ({"actor": {"actor_id": "7"}}, "actor.actor_type"),
        ({"actor": {"actor_type": "user", "actor_id": "7", 3: "x"}}, "actor"),
        ({"actor": ["user", "7"]}, "actor"),
        ({"timestamp": EDGE_OF_TIME}, "timestamp"),
        ({"timestamp": END_OF_TIME}, "timestamp"),
        ({"features": {"node": cyclic()}}, "features.node"),
        ({"features": {"node": deep(10_000)}}, "features.node"),
        ({"output": deep(10_000)}, "output"),
        ({"metadata": {"n": deep(10_000)}}, "metadata.n"),
        ({"features": {"big": 10**5000}}, "features.big"),
        ({"features": {10**5000: 1}}, "features"),
        ({"confidence": 10**5000}, "confidence"),
        ({"features": {"s": "a\x00b"}}, "features.s"),
        ({"features": {"s": "\ud800"}}, "features.s"),
        ({"model_name": "m\x00"}, "model_name"),
        ({"prediction_id": "\ud800"}, "prediction_id"),
    ],
)
def test_hostile_recording_arguments_are_refused_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRecord) as refused:
        record(**overrides)
    assert refused.value.field.startswith(field), refused.value
    assert not PredictionEvent.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"generated_at": EDGE_OF_TIME}, "generated_at"),
        ({"payload": {"node": cyclic()}}, "payload.node"),
        ({"payload": deep(10_000)}, "payload"),
        ({"payload": {"n": 10**5000}}, "payload.n"),
        ({"summary_text": "a\x00b"}, "summary_text"),
    ],
)
def test_hostile_explanation_arguments_are_refused_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    event = record()
    arguments: dict[str, Any] = {"method": "shap", "payload": {"x": 0.1}}
    arguments.update(overrides)
    with pytest.raises(InvalidRecord) as refused:
        attach_explanation(event, **arguments)
    assert refused.value.field.startswith(field), refused.value
    assert not Explanation.objects.exists()


@pytest.mark.parametrize("reference", ["p\x00", "\ud800", "p\x00" * 1000])
def test_a_prediction_reference_a_database_cannot_hold_is_refused(reference: str) -> None:
    record(prediction_id="p")
    with pytest.raises(MLAuditError) as refused:
        attach_explanation(reference, method="shap", payload={})
    assert isinstance(refused.value, InvalidRecord | PredictionNotFound)
    assert not Explanation.objects.exists()


@pytest.mark.parametrize(
    "describe_error",
    [
        lambda exc: None,
        lambda exc: 42,
        lambda exc: 1 / 0,
        lambda exc: "contains NUL \x00 and a lone surrogate \ud800",
    ],
)
def test_a_broken_describe_error_neither_hides_the_failure_nor_replaces_the_exception(
    describe_error: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class ModelCrashed(Exception):
        pass

    with (
        caplog.at_level(logging.WARNING, logger="ml_audit.otel"),
        pytest.raises(ModelCrashed),
        prediction_span(
            model_name="m",
            model_version="1",
            features={"x": 1},
            mode="sync",
            describe_error=describe_error,
        ) as p,
    ):
        raise ModelCrashed("boom")
    row = PredictionEvent.objects.get(prediction_id=p.prediction_id)
    assert row.status == "failed"
    assert row.error_type.endswith("ModelCrashed")
    assert "\x00" not in row.error_message
    assert "\ud800" not in row.error_message


def test_an_exception_whose_str_raises_is_recorded_without_its_message() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    with (
        pytest.raises(Unprintable),
        prediction_span(model_name="m", model_version="1", features={"x": 1}, mode="sync") as p,
    ):
        raise Unprintable()
    row = PredictionEvent.objects.get(prediction_id=p.prediction_id)
    assert (row.status, row.error_message) == ("failed", "")


def test_a_huge_payload_is_refused_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("redaction must not run on a payload over the limit")

    monkeypatch.setattr("ml_audit.records.redact_flat", never)
    monkeypatch.setattr("ml_audit.records.redact", never)
    fifty_mb = "4111 1111 " * 5_000_000  # 50 MB
    with pytest.raises(InvalidRecord, match="MAX_PAYLOAD_BYTES") as refused:
        record(features={"note": fifty_mb})
    assert refused.value.field == "features"
    with pytest.raises(InvalidRecord, match="MAX_PAYLOAD_BYTES"):
        prediction_span(model_name="m", model_version="1", features={"note": fifty_mb})
    with pytest.raises(InvalidRecord, match="MAX_PAYLOAD_BYTES"):
        record(features={"notes": ["x" * 1000] * 5000})  # many small strings add up
    assert not PredictionEvent.objects.exists()


def test_the_payload_limit_is_a_setting(settings: Any) -> None:
    settings.ML_AUDIT = {"MAX_PAYLOAD_BYTES": 2048}
    with pytest.raises(InvalidRecord, match="2,048"):
        record(features={"note": "x" * 3000})
    event = record(features={"note": "x" * 1000})
    assert event.features == {"note": "x" * 1000}
    settings.ML_AUDIT = {"MAX_PAYLOAD_BYTES": None}
    assert record(features={"note": "x" * 2_000_000}).features["note"] == "x" * 2_000_000


def test_an_outcome_over_the_limit_is_recorded_as_failed_and_raised(settings: Any) -> None:
    settings.ML_AUDIT = {"MAX_PAYLOAD_BYTES": 2048}
    with (
        pytest.raises(InvalidRecord, match="output"),
        prediction_span(model_name="m", model_version="1", features={"x": 1}, mode="sync") as p,
    ):
        p.set_output({"blob": "y" * 5000})
    row = PredictionEvent.objects.get(prediction_id=p.prediction_id)
    assert row.status == "failed"
    assert row.output is None
