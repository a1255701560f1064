"""encode/decode between records and span attributes."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_audit.exceptions import InvalidRecord
from ml_audit.otel import conventions
from ml_audit.otel.conventions import ATTR, PAYLOAD_ATTRIBUTES
from ml_audit.records import ActorPayload, PredictionRecord, revalidated
from ml_audit.redaction import RedactionPolicy

IDS: dict[str, Any] = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_span_id": "ef" * 8}


def redacted(**overrides: object) -> PredictionRecord:
    kwargs: dict[str, object] = {
        "model_name": "credit",
        "model_version": "7",
        "features": {"age": 31, "email": "a@example.com"},
    }
    kwargs.update(overrides)
    record = PredictionRecord.create(**kwargs)  # type: ignore[arg-type]
    return record.redact(RedactionPolicy(), frozenset({"features", "output"}))


def with_ids(record: PredictionRecord) -> PredictionRecord:
    import dataclasses

    return dataclasses.replace(record, **IDS)


def assert_round_trip(record: PredictionRecord) -> None:
    """decode inverts encode, and what it gives passes the checks of a recording call as is
    (the processor revalidates a record rebuilt from a span)."""
    decoded = conventions.decode(conventions.encode(record), **IDS)
    assert decoded == record
    assert revalidated(decoded) == record


def test_round_trip_of_a_full_record() -> None:
    record = with_ids(
        redacted(
            output={"score": 0.25, "labels": ["a", "b"]},
            confidence=0.25,
            decision_outcome="approve",
            latency_ms=4.5,
            metadata={"note": "ünïcødé ✓", "n": None},
            environment="prod",
            actor=ActorPayload("user", "u1", "t1", "203.0.113.4", "ua", {"scopes": ["r"]}),
            trace_id="request-42",
            status="partial",
            error_type="Warning",
            error_message="partial output",
        )
    )
    assert_round_trip(record)


def test_round_trip_of_every_normalised_type_and_a_large_payload() -> None:
    features = {
        "decimal": decimal.Decimal("1.10"),
        "when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        "uuid": uuid.uuid4(),
        "set": {3, 1},
        "bytes": b"\x01",
        "np": np.arange(3),
        "nan": float("nan"),
        "big": ["x" * 1000] * 1000,
    }
    record = with_ids(redacted(features=features))
    attributes = conventions.encode(record)
    assert len(str(attributes[ATTR.FEATURES])) > 1_000_000
    assert conventions.decode(attributes, **IDS) == record


json_leaf = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20)
json_tree = st.recursive(
    json_leaf | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(
    features=st.dictionaries(st.text(min_size=1, max_size=8), json_tree, max_size=5),
    output=json_tree,
)
def test_round_trip_property(features: dict[str, object], output: object) -> None:
    try:
        record = with_ids(redacted(features=features, output=output))
    except ValueError:
        return  # NUL characters and surrogates are refused before a span exists
    assert_round_trip(record)


def test_encode_refuses_unredacted_records() -> None:
    record = PredictionRecord.create(model_name="m", model_version="1", features={"x": 1})
    with pytest.raises(ValueError, match="redacted"):
        conventions.encode(record)


def test_no_raw_sensitive_value_in_any_attribute() -> None:
    record = redacted(
        features={"email": "secret@example.com", "notes": "card 4111 1111 1111 1111"},
        output={"password": "hunter2"},
        error_message="bad value secret@example.com",
    )
    text = json.dumps(conventions.encode(record))
    for secret in ("secret@example.com", "4111 1111 1111 1111", "hunter2"):
        assert secret not in text


def test_payload_export_can_be_turned_off() -> None:
    actor = ActorPayload("user", "1", auth_context={"m": "sso"})
    attributes = conventions.encode(redacted(actor=actor), export_payloads=False)
    assert not PAYLOAD_ATTRIBUTES & set(attributes)
    assert attributes[ATTR.MODEL_NAME] == "credit"
    assert ATTR.REDACTION in attributes


def test_max_length_cuts_exported_json_and_decode_says_so() -> None:
    record = redacted(features={f"f{i}": i for i in range(100)})
    attributes = conventions.encode(record, max_length=32)
    assert len(str(attributes[ATTR.FEATURES])) == 32
    assert str(attributes[ATTR.FEATURES]).endswith("…")
    with pytest.raises(ValueError, match="not whole JSON"):
        conventions.decode(attributes, **IDS)


def test_decode_refuses_spans_without_the_required_attributes() -> None:
    with pytest.raises(ValueError, match="lacks ml_audit attributes"):
        conventions.decode({ATTR.MODEL_NAME: "m"})
    attributes = conventions.encode(redacted())
    attributes[ATTR.SCHEMA_VERSION] = 99
    with pytest.raises(ValueError, match="schema version"):
        conventions.decode(attributes)


def test_standard_attributes_are_used_where_they_fit() -> None:
    actor = ActorPayload("user", "1", ip_address="198.51.100.2", user_agent="curl/8")
    attributes = conventions.encode(
        redacted(actor=actor, status="failed", error_type="E"), openinference=False
    )
    assert attributes["client.address"] == "198.51.100.2"
    assert attributes["user_agent.original"] == "curl/8"
    assert attributes["error.type"] == "E"
    assert all(
        k.startswith("ml_audit.")
        for k in attributes
        if "." in k and k not in {"client.address", "user_agent.original", "error.type"}
    )


def test_huge_integers_fall_back_to_the_standard_encoder() -> None:
    record = with_ids(redacted(features={"big": 10**30, "f": 1e300}))
    attributes = conventions.encode(record)
    assert json.loads(str(attributes[ATTR.FEATURES])) == {"big": 10**30, "f": int(1e300)}
    assert conventions.decode(attributes, **IDS) == record


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ml_audit.prediction credit", True),
        ("ml_audit.prediction", True),
        ("ml_audit.predictions", False),
        ("ml_audit.prediction_cache get", False),
        ("ml_audit.explanation shap", False),
        ("GET /predict/", False),
    ],
)
def test_is_prediction_span_matches_our_names_only(name: str, expected: bool) -> None:
    assert conventions.is_prediction_span(name) is expected


def test_standard_and_accelerated_encoders_agree() -> None:
    record = redacted(features={"a": 1.5, "b": "ü", "c": [None, True], "d": {"e": 10**20}})
    for value in (record.features, record.redaction):
        assert json.loads(conventions._std_dumps(value)) == json.loads(conventions._dumps(value))


def _generic_encode(record: PredictionRecord, max_length: int | None = None) -> dict[str, Any]:
    """The straightforward encoding (the one before the fast path), to compare with."""
    attributes: dict[str, Any] = {
        ATTR.SCHEMA_VERSION: conventions.SCHEMA_VERSION,
        ATTR.EVENT_ID: str(record.event_id),
        ATTR.PREDICTION_ID: record.prediction_id,
        ATTR.TIMESTAMP: record.timestamp.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        ATTR.MODEL_NAME: record.model_name,
        ATTR.MODEL_VERSION: record.model_version,
        ATTR.STATUS: record.status,
        ATTR.REDACTION: conventions._json(record.redaction, max_length),
    }
    optional: dict[str, Any] = {
        ATTR.ENVIRONMENT: record.environment,
        ATTR.DECISION_OUTCOME: record.decision_outcome,
        ATTR.CONFIDENCE: record.confidence,
        ATTR.LATENCY_MS: record.latency_ms,
        ATTR.ERROR_TYPE: record.error_type,
        ATTR.ERROR_MESSAGE: record.error_message,
        ATTR.CORRELATION_ID: record.correlation_id,
    }
    actor = record.actor
    if actor is not None:
        optional.update(
            {
                ATTR.ACTOR_TYPE: actor.actor_type,
                ATTR.ACTOR_ID: actor.actor_id,
                ATTR.TENANT_ID: actor.tenant_id,
                ATTR.CLIENT_ADDRESS: actor.ip_address,
                ATTR.USER_AGENT: actor.user_agent,
            }
        )
    attributes.update({k: v for k, v in optional.items() if v is not None and v != ""})
    attributes[ATTR.FEATURES] = conventions._json(record.features, max_length)
    attributes[ATTR.OUTPUT] = conventions._json(record.output, max_length)
    attributes[ATTR.METADATA] = conventions._json(record.metadata, max_length)
    if actor is not None and actor.auth_context is not None:
        attributes[ATTR.AUTH_CONTEXT] = conventions._json(actor.auth_context, max_length)
    return attributes


@pytest.mark.parametrize("max_length", [None, 16, 1])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"confidence": 0.0, "decision_outcome": "", "environment": ""},
        {"timestamp": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)},
        {
            "timestamp": dt.datetime(
                2024, 5, 1, 12, 30, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))
            )
        },
        {"actor": ActorPayload("user", "1", user_agent="", auth_context={"scope": "x"})},
        {"actor": None, "metadata": {"a": 1}, "status": "failed", "error_type": "E"},
    ],
)
def test_encode_gives_the_generic_attributes_in_the_same_order(
    overrides: dict[str, object], max_length: int | None
) -> None:
    record = redacted(**overrides)
    fast = conventions.encode(record, max_length=max_length, openinference=False)
    assert fast == _generic_encode(record, max_length)
    assert list(fast) == list(_generic_encode(record, max_length))
    assert set(fast) <= {v for k, v in vars(ATTR).items() if k.isupper()}
    # The OpenInference set only adds attributes after these: the ml_audit.* ones are the same.
    both = conventions.encode(record, max_length=max_length, openinference=True)
    assert list(both)[: len(fast)] == list(fast)
    assert {k: both[k] for k in fast} == fast


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"confidence": 7.5}, "confidence"),
        ({"status": "bogus"}, "status"),
        ({"model_name": ""}, "model_name"),
        ({"features": ["not", "a", "mapping"]}, "features"),
        ({"features": {"x": float("nan")}}, None),  # normalised, not refused: see below
        ({"latency_ms": -1.0}, "latency_ms"),
        ({"trace_id": "XYZ"}, "trace_id"),
        ({"trace_id": "0" * 32}, "trace_id"),
        ({"span_id": "nothex"}, "span_id"),
        ({"correlation_id": "x" * 300}, "correlation_id"),
        ({"redaction": None}, "redaction"),
        ({"redaction": {"policy": "v1"}}, "redaction"),
        ({"redaction": {"policy": "v1", "paths": {"secrets": ["a"]}}}, "redaction"),
        ({"redaction": {"policy": "v1", "paths": {"features": "a"}}}, "redaction"),
    ],
)
def test_revalidated_refuses_what_a_recording_call_would(
    changes: dict[str, Any], field: str | None
) -> None:
    import dataclasses

    record = dataclasses.replace(with_ids(redacted(confidence=0.5)), **changes)
    if field is None:
        # A value a call would have normalised comes back normalised (NaN as the string
        # JSON can carry), never stored as given.
        assert revalidated(record).features == {"x": "NaN"}
        return
    with pytest.raises(InvalidRecord) as raised:
        revalidated(record)
    assert raised.value.field == field
