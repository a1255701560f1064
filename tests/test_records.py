"""Records: validation, JSON normalisation, identifiers, hashes. No database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ml_audit.exceptions import InvalidRecord
from ml_audit.records import (
    ActorPayload,
    ExplanationRecord,
    PredictionRecord,
    canonical_json,
    split_trace_reference,
    to_json,
    uuid7,
)
from ml_audit.redaction import RedactionPolicy, redact


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: float


def make(**overrides: object) -> PredictionRecord:
    kwargs: dict[str, object] = {
        "model_name": "fraud",
        "model_version": "1.0.0",
        "features": {"age": 42},
    }
    kwargs.update(overrides)
    return PredictionRecord.create(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- uuid7


def test_uuid7_has_version_7_and_rfc_variant() -> None:
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_uuid7_embeds_the_current_unix_millisecond() -> None:
    before = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    value = uuid7()
    after = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    assert before - 1 <= value.int >> 80 <= after + 1


def test_uuid7_is_strictly_increasing_within_a_burst() -> None:
    values = [uuid7() for _ in range(20_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)


# ----------------------------------------------------------------------------- to_json


def test_to_json_normalises_real_world_types() -> None:
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = {
        "amount": decimal.Decimal("100.10"),
        "when": when,
        "day": dt.date(2024, 5, 1),
        "at": dt.time(8, 15),
        "id": ident,
        "colour": Colour.RED,
        "tags": {"b", "a"},
        "pair": (1, 2),
        "raw": b"\x00\xff",
        "point": Point(1, 2.5),
        1: "int key",
    }
    assert to_json(value) == {
        "amount": "100.10",
        "when": "2024-05-01T12:30:00+00:00",
        "day": "2024-05-01",
        "at": "08:15:00",
        "id": "12345678-1234-5678-1234-567812345678",
        "colour": "red",
        "tags": ["a", "b"],
        "pair": [1, 2],
        "raw": "base64:AP8=",
        "point": {"x": 1, "y": 2.5},
        "1": "int key",
    }


def test_to_json_handles_numpy_without_special_casing_callers() -> None:
    value = {
        "f32": np.float32(0.5),
        "i64": np.int64(7),
        "flag": np.bool_(True),
        "vec": np.array([[1, 2], [3, 4]]),
        "nan": np.float64("nan"),
    }
    result = to_json(value)
    assert result == {"f32": 0.5, "i64": 7, "flag": True, "vec": [[1, 2], [3, 4]], "nan": "NaN"}
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (decimal.Decimal("NaN"), "NaN"),
        (decimal.Decimal("-Infinity"), "-Infinity"),
        (1e300, int(1e300)),
        (1.5, 1.5),
    ],
)
def test_non_finite_and_huge_floats_have_a_json_safe_form(value: object, expected: object) -> None:
    result = to_json(value)
    assert result == expected
    assert type(result) is type(expected)
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": object()}, "cannot be stored as JSON"),
        ({"a": "nul\x00byte"}, "NUL"),
        ({"a": "\ud800"}, "surrogate"),
        ({1: "x", "1": "y"}, "two keys"),
        ({(1, 2): "tuple key"}, "mapping key"),
    ],
)
def test_to_json_refuses_what_cannot_be_stored_with_the_path(value: object, message: str) -> None:
    with pytest.raises(InvalidRecord, match=message) as info:
        to_json(value, "features")
    assert info.value.field.startswith("features")


def test_to_json_refuses_cycles_and_extreme_depth() -> None:
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(InvalidRecord, match="cycle"):
        to_json(cyclic)
    deep: object = 1
    for _ in range(200):
        deep = [deep]
    with pytest.raises(InvalidRecord, match="deeper"):
        to_json(deep)


def test_shared_subobjects_are_not_mistaken_for_cycles() -> None:
    shared = {"k": 1}
    assert to_json({"a": shared, "b": shared}) == {"a": {"k": 1}, "b": {"k": 1}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_to_json_output_is_strict_json_and_idempotent(value: object) -> None:
    try:
        result = to_json(value)
    except InvalidRecord:
        return  # NUL bytes and surrogates are refused by design
    text = json.dumps(result, allow_nan=False)
    assert to_json(json.loads(text)) == json.loads(text)
    assert canonical_json(to_json(result)) == canonical_json(result)


def test_canonical_json_is_order_independent_and_utf8() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == canonical_json({"a": "é", "b": 1})
    assert canonical_json({"a": "é"}) == '{"a":"é"}'


# ----------------------------------------------------------------------------- trace ids


def test_w3c_trace_id_is_kept_and_anything_else_is_a_correlation_id() -> None:
    assert split_trace_reference("4BF92F3577B34DA6A3CE929D0E0E4736") == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "",
    )
    request_id = "3f2c1c9e-8d2b-4b7a-9a5e-0c8e1f1b2a3c"
    assert split_trace_reference(request_id) == ("", request_id)
    assert split_trace_reference("0" * 32) == ("", "0" * 32)
    assert split_trace_reference(None) == ("", "")


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
        ({"confidence": float("nan")}, "confidence"),
        ({"confidence": "0.5"}, "confidence"),
        ({"confidence": True}, "confidence"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": float("inf")}, "latency_ms"),
        ({"status": "ok"}, "status"),
        ({"features": [1, 2]}, "features"),
        ({"features": None}, "features"),
        ({"model_name": ""}, "model_name"),
        ({"model_name": "   "}, "model_name"),
        ({"model_name": "x" * 201}, "model_name"),
        ({"model_version": None}, "model_version"),
        ({"model_version": "v" * 101}, "model_version"),
        ({"environment": "e" * 65}, "environment"),
        ({"prediction_id": ""}, "prediction_id"),
        ({"prediction_id": "p" * 256}, "prediction_id"),
        ({"decision_outcome": "d" * 129}, "decision_outcome"),
        ({"metadata": "not a dict"}, "metadata"),
        ({"timestamp": dt.datetime(2024, 1, 1)}, "timestamp"),
        ({"timestamp": "2024-01-01"}, "timestamp"),
        ({"actor": {"actor_type": "robot", "actor_id": "1"}}, "actor.actor_type"),
        ({"actor": {"actor_type": "user", "actor_id": ""}}, "actor.actor_id"),
        (
            {"actor": {"actor_type": "user", "actor_id": "1", "ip_address": "nope"}},
            "actor.ip_address",
        ),
        ({"actor": {"actor_type": "user", "actor_id": "1", "colour": "x"}}, "actor"),
        ({"actor": "user:1"}, "actor"),
    ],
)
def test_invalid_arguments_raise_invalid_record_naming_the_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidRecord) as info:
        make(**overrides)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)


def test_valid_edge_values_are_accepted() -> None:
    record = make(
        confidence=decimal.Decimal("1"),
        latency_ms=0,
        model_version=3,
        actor=ActorPayload(
            "service",
            17,  # type: ignore[arg-type]  # ints are accepted for untyped callers
            tenant_id=9,  # type: ignore[arg-type]
            ip_address=" ::ffff:10.0.0.1 ",
        ),
    )
    assert record.confidence == 1.0
    assert record.latency_ms == 0.0
    assert record.model_version == "3"
    assert record.actor is not None
    assert record.actor.actor_id == "17"
    assert record.tenant_id == "9"
    assert record.actor.ip_address == "::ffff:10.0.0.1"


def test_naive_timestamp_is_read_as_utc_when_configured() -> None:
    record = make(timestamp=dt.datetime(2024, 1, 1, 12), naive_datetime_policy="utc")
    assert record.timestamp == dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)


def test_aware_timestamp_is_converted_to_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    record = make(timestamp=dt.datetime(2024, 6, 1, 14, tzinfo=paris))
    assert record.timestamp == dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)
    assert record.timestamp.tzinfo is dt.UTC


def test_default_prediction_id_is_the_event_uuid() -> None:
    record = make()
    assert record.prediction_id == str(record.event_id)


# ----------------------------------------------------------------------------- redaction + hash


def test_redact_records_paths_and_policy_version_but_no_values() -> None:
    policy = RedactionPolicy()
    record = make(
        features={"age": 42, "email": "a@example.com", "contact": {"phone": "+44 20 7946 0958"}},
        output={"email": "b@example.com"},
        error_message="bad input a@example.com",
    ).redact(policy, frozenset({"features"}))
    assert record.features["email"] == "*****"
    assert record.features["contact"]["phone"] == "*****"
    assert record.features["age"] == 42
    assert record.output == {"email": "b@example.com"}  # output not named in payloads
    assert "a@example.com" not in record.error_message
    assert record.redaction is not None
    assert record.redaction["policy"] == policy.version
    assert set(record.redaction["paths"]["features"]) == {"email", "contact.phone"}
    assert "a@example.com" not in canonical_json(record.redaction)


def test_redact_twice_is_refused() -> None:
    record = make().redact(RedactionPolicy(), frozenset())
    with pytest.raises(ValueError, match="already redacted"):
        record.redact(RedactionPolicy(), frozenset())


def test_output_metadata_and_auth_context_are_redacted_when_named() -> None:
    actor = ActorPayload("user", "1", auth_context={"token": "abc", "scopes": ["read"]})
    record = make(output={"password": "x"}, metadata={"ssn": "x"}, actor=actor).redact(
        RedactionPolicy(), frozenset({"features", "output", "metadata", "auth_context"})
    )
    assert record.output == {"password": "*****"}
    assert record.metadata == {"ssn": "*****"}
    assert record.actor is not None
    assert record.actor.auth_context == {"token": "*****", "scopes": ["read"]}
    assert record.redaction is not None
    assert set(record.redaction["paths"]) == {"output", "metadata", "auth_context"}


def test_content_hash_changes_with_any_stored_field() -> None:
    record = make().redact(RedactionPolicy(), frozenset())
    base = record.content_hash()
    assert base == record.content_hash()
    assert len(base) == 64
    for change in (
        {"features": {"age": 43}},
        {"decision_outcome": "flagged"},
        {"latency_ms": 1.0},
        {"trace_id": "a" * 32},
        {"timestamp": record.timestamp + dt.timedelta(microseconds=1)},
    ):
        changed = dataclasses.replace(record, **change)
        assert changed.content_hash() != base


def test_input_fingerprint_is_of_redacted_features() -> None:
    one = make(features={"email": "a@example.com", "age": 1}).redact(RedactionPolicy(), frozenset())
    two = make(features={"email": "b@example.com", "age": 1}).redact(RedactionPolicy(), frozenset())
    assert one.input_fingerprint == two.input_fingerprint


def test_identity_ignores_transport_context() -> None:
    one = make(prediction_id="p1", latency_ms=1, trace_id="x", actor=ActorPayload("user", "1"))
    two = make(
        prediction_id="p1",
        latency_ms=9,
        trace_id="y",
        actor=ActorPayload("user", "1", ip_address="10.0.0.1"),
    )
    assert one.identity() == two.identity()
    assert one.identity() != make(prediction_id="p1", confidence=0.5).identity()


# ----------------------------------------------------------------------------- explanations


def test_explanation_record_validates_and_normalises() -> None:
    record = ExplanationRecord.create(
        method="shap", payload={"values": np.array([0.1, 0.2])}, summary_text="why"
    )
    assert record.payload == {"values": [0.1, 0.2]}
    assert record.generated_at.tzinfo is dt.UTC
    with pytest.raises(InvalidRecord) as info:
        ExplanationRecord.create(method="", payload={})
    assert info.value.field == "method"
    with pytest.raises(InvalidRecord) as info:
        ExplanationRecord.create(method="shap", payload={}, status="done")
    assert info.value.field == "status"
    with pytest.raises(InvalidRecord) as info:
        ExplanationRecord.create(method="shap", payload={}, generated_at=dt.datetime(2024, 1, 1))
    assert info.value.field == "generated_at"


def test_nan_in_payload_round_trips_through_strict_json() -> None:
    record = make(features={"score": math.nan}, output=[math.inf])
    assert record.features == {"score": "NaN"}
    assert record.output == ["Infinity"]
    json.dumps(record.redact(RedactionPolicy(), frozenset()).stored_fields(), allow_nan=False)


def test_to_dict_from_dict_is_lossless() -> None:
    record = make(
        actor=ActorPayload("user", "1", "t", "10.0.0.1", "ua", {"scopes": ["a"]}),
        output={"x": [1.5, None]},
        latency_ms=2.25,
        trace_id="ab" * 16,
        metadata={"é": "ü"},
    ).redact(RedactionPolicy(), frozenset())
    data = json.loads(json.dumps(record.to_dict(), allow_nan=False))
    assert PredictionRecord.from_dict(data) == record
    with pytest.raises(InvalidRecord):
        PredictionRecord.from_dict({**data, "schema": 99})


def test_uuid7_random_bits_differ_between_parent_and_forked_child() -> None:
    import os

    uuid7()  # fill the parent's random pool
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the next id and leave without running pytest's teardown
        os.write(write_end, uuid7().bytes)
        os._exit(0)
    os.waitpid(pid, 0)
    child = uuid.UUID(bytes=os.read(read_end, 16))
    parent = uuid7()
    assert child.int & ((1 << 62) - 1) != parent.int & ((1 << 62) - 1)


@given(json_values, st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_canonical_json_of_mapping_equals_canonical_json(
    payload: object, rest: dict[str, object]
) -> None:
    from ml_audit.records import canonical_json_of_mapping

    try:
        value = to_json({**rest, "features": payload})
    except InvalidRecord:
        return
    known = {"features": canonical_json(value["features"])}
    assert canonical_json_of_mapping(value, known) == canonical_json(value)
    assert canonical_json_of_mapping(value, {}) == canonical_json(value)


def test_content_hash_is_sha256_of_the_canonical_stored_fields() -> None:
    import hashlib

    record = make(features={"b": 1.5, "a": "é"}).redact(RedactionPolicy(), frozenset())
    expected = hashlib.sha256(canonical_json(record.stored_fields()).encode()).hexdigest()
    assert record.content_hash() == expected


def test_evolve_drops_cached_derived_values_and_refuses_unknown_fields() -> None:
    record = make(features={"a": 1}).redact(RedactionPolicy(), frozenset())
    before = record.input_fingerprint
    changed = record.evolve(features={"a": 2})
    assert changed.input_fingerprint != before
    assert record.evolve(latency_ms=3.0).input_fingerprint == before
    with pytest.raises(TypeError, match="nonsense"):
        record.evolve(nonsense=1)


# ----------------------------------------------------------------------------- fast paths


def test_uuid7_builds_the_same_object_as_the_uuid_constructor() -> None:
    import pickle

    value = uuid7()
    rebuilt = uuid.UUID(int=value.int)
    assert value == rebuilt
    assert hash(value) == hash(rebuilt)
    assert value.is_safe == rebuilt.is_safe
    assert str(value) == str(rebuilt)
    assert pickle.loads(pickle.dumps(value)) == rebuilt
    assert type(value) is uuid.UUID


_draft_features = st.dictionaries(
    st.sampled_from(["age", "income", "email", "phone", "notes", "é", "has_email", "n"]),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.sampled_from(["DE", "jane@example.com", "call 555-123-4567", "x\x00y"]),
        st.lists(st.integers(), max_size=2),
    ),
    max_size=8,
)


@given(features=_draft_features, policy_index=st.integers(min_value=0, max_value=2))
# -0.0 is stored as 0.0 and integers of more than MAX_INT_DIGITS digits are refused by the
# general path (tests/test_exact_storage.py): the one-walk path must do the same, also for a
# key it redacts or scans.
@example(features={"age": -0.0}, policy_index=0)
@example(features={"income": -0.0, "age": 1.5}, policy_index=2)
@example(features={"age": 10**640}, policy_index=0)
@example(features={"income": -(10**640)}, policy_index=2)
def test_create_draft_gives_the_record_and_redaction_of_the_general_path(
    features: dict[str, object], policy_index: int
) -> None:
    from ml_audit.records import create_draft

    policy = [
        RedactionPolicy(),
        RedactionPolicy(mode="drop"),
        RedactionPolicy(denylist=frozenset(["income"]), allowlist=frozenset(["notes"])),
    ][policy_index]
    event_id = uuid7()
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    kwargs: dict[str, object] = {
        "model_name": "m",
        "model_version": 3,
        "features": features,
        "actor": {"actor_type": "user", "actor_id": 7},
        "event_id": event_id,
        "timestamp": when,
    }
    message = None
    try:
        expected = PredictionRecord.create(**kwargs)  # type: ignore[arg-type]
    except InvalidRecord as error:
        message = str(error)
    if message is not None:
        with pytest.raises(InvalidRecord) as info:
            create_draft(PredictionRecord, policy, **kwargs)  # type: ignore[arg-type]
        assert str(info.value) == message
        return
    draft, prepared = create_draft(PredictionRecord, policy, **kwargs)  # type: ignore[arg-type]
    assert draft == expected
    fields = {k: v for k, v in vars(draft).items() if not k.startswith("_")}
    assert fields == {k: v for k, v in vars(expected).items() if not k.startswith("_")}
    assert list(fields) == [f.name for f in dataclasses.fields(PredictionRecord)]
    payloads = frozenset({"features"})
    if prepared is not None:
        assert prepared.features is draft.features
        redacted = redact(draft.features, policy)
        assert (prepared.value, prepared.paths) == (redacted.value, redacted.paths)
    fast = draft._redact(policy, payloads, prepared)
    general = expected.redact(policy, payloads)
    assert fast == general
    assert fast.content_hash() == general.content_hash()


def test_prepared_redaction_is_ignored_for_another_policy_or_other_features() -> None:
    from ml_audit.records import create_draft

    draft, prepared = create_draft(
        PredictionRecord,
        RedactionPolicy(),
        model_name="m",
        model_version="1",
        features={"customer_code": "AB-1234567", "age": 3},
    )
    assert prepared is not None
    payloads = frozenset({"features"})
    stricter = RedactionPolicy(denylist=frozenset(["customer_code"]))
    # Another policy object (a settings change): the prepared result is not used.
    assert draft._redact(stricter, payloads, prepared).features == {
        "customer_code": "*****",
        "age": 3,
    }
    # The same policy but other features (a copy that replaced them): not used either.
    changed = draft.evolve(features={"customer_code": "jane@example.com"})
    policy = prepared.policy
    assert changed._redact(policy, payloads, prepared).features == {"customer_code": "*****"}
    assert draft._redact(policy, payloads, prepared) == draft.redact(policy, payloads)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"features": [1, 2]}, "features"),
        ({"model_name": ""}, "model_name"),
        ({"model_version": None}, "model_version"),
        ({"model_version": "v" * 101}, "model_version"),
        ({"prediction_id": ""}, "prediction_id"),
        ({"trace_id": 5, "prediction_id": ""}, "trace_id"),
        ({"metadata": "not a dict"}, "metadata"),
        ({"features": {"a": "x\x00"}, "metadata": "not a dict"}, "features.a"),
        ({"status": "weird", "output": object()}, "status"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"span_id": "XYZ"}, "span_id"),
        ({"parent_span_id": "abc"}, "parent_span_id"),
    ],
)
def test_create_draft_raises_what_create_raises(overrides: dict[str, object], field: str) -> None:
    from ml_audit.records import create_draft

    kwargs: dict[str, object] = {"model_name": "m", "model_version": "1", "features": {"a": 1}}
    kwargs.update(overrides)
    with pytest.raises(InvalidRecord) as expected:
        PredictionRecord.create(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord) as info:
        create_draft(PredictionRecord, RedactionPolicy(), **kwargs)  # type: ignore[arg-type]
    assert info.value.field == expected.value.field == field
    assert str(info.value) == str(expected.value)


def test_with_outcome_fast_paths_validate_like_the_checks() -> None:
    record = make()
    done = record.with_outcome(output={"s": 0.5}, confidence=0.5, decision_outcome="ok")
    assert (done.output, done.confidence, done.decision_outcome) == ({"s": 0.5}, 0.5, "ok")
    assert (done.error_type, done.error_message, done.metadata) == ("", "", {})
    assert done.metadata is not record.metadata
    with pytest.raises(InvalidRecord, match="confidence"):
        record.with_outcome(confidence=1.5)
    with pytest.raises(InvalidRecord, match="confidence"):
        record.with_outcome(confidence=float("nan"))
    with pytest.raises(InvalidRecord, match="decision_outcome"):
        record.with_outcome(decision_outcome=3)
    assert record.with_outcome(decision_outcome="  x ").decision_outcome == "x"
    assert record.with_outcome(error_type=" E ", error_message=" m ").error_message == " m "


def test_copies_keep_cached_values_of_unchanged_fields_only() -> None:
    record = make(features={"a": 1}).redact(RedactionPolicy(), frozenset())
    fingerprint = record.input_fingerprint
    text = record._event_id_text
    later = record.evolve(latency_ms=2.0)
    assert vars(later)["input_fingerprint"] == fingerprint
    assert vars(later)["_event_id_text"] == text == str(record.event_id)
    other = record.evolve(event_id=uuid7())
    assert "_event_id_text" not in vars(other)
    assert other._event_id_text == str(other.event_id)
    assert "input_fingerprint" not in vars(record.evolve(features={"a": 2}))
