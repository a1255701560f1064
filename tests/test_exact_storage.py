"""Exact storage: what the normaliser accepts reads back from the database with its hash.

Every value :func:`ml_audit.normalise.to_json` accepts (via ``PredictionRecord.create``) must
hash the same before and after a round trip through the database: a row that was not tampered
with must never read as tampered. Run on SQLite (default) and on PostgreSQL (``DATABASE_URL``).

And concurrent ``attach_explanation`` calls on one prediction get revisions 1..N, without gaps,
duplicates or a database race surfacing to the caller: processes on PostgreSQL, threads on
SQLite (a file database of its own: the in-memory test database's shared cache answers "table
is locked" at once instead of waiting for the write lock) and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
import uuid
from typing import Any

import numpy as np
import pytest
from django.db import connections, transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ml_audit import store
from ml_audit.canonical import canonical_json
from ml_audit.exceptions import InvalidRecord
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.normalise import MAX_DEPTH, MAX_INT_DIGITS, to_json
from ml_audit.records import PredictionRecord
from ml_audit.redaction import RedactionPolicy
from ml_audit.services import attach_explanation, record_prediction_event

# ------------------------------------------------------------------------------ strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),  # beyond 64 bits
    st.floats(),  # nan, ±inf, -0.0, subnormals...
    st.floats(min_value=-1e-300, max_value=1e-300),  # tiny and subnormal
    st.floats(min_value=1e15, max_value=1e300),  # around and beyond 2**53
    st.text(),  # any Unicode: NUL and lone surrogates are refused
    st.decimals(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.uuids(),
    st.binary(max_size=8),
)
payloads = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
mappings = st.dictionaries(st.text(max_size=8), payloads, max_size=5)
confidences = st.one_of(
    st.none(),
    st.floats(min_value=-0.0, max_value=1.0),  # min_value=0.0 would leave out -0.0
    st.decimals(min_value=0, max_value=1),
    st.integers(min_value=0, max_value=1),
)
latencies = st.none() | st.floats(min_value=-0.0, allow_infinity=False) | st.integers(0, 10**6)

#: The arguments a refused value may be named under (``InvalidRecord.field``).
GENERATED = ("features", "output", "metadata", "confidence", "latency_ms")

LONGEST_INT = 10**MAX_INT_DIGITS - 1  # MAX_INT_DIGITS nines: the longest integer accepted


def _argument(field: str) -> str:
    return field.split(".", 1)[0].split("[", 1)[0]


def _nested(levels: int) -> Any:
    value: Any = -0.0
    for _ in range(levels):
        value = [value]
    return value


# ------------------------------------------------------------------------------ predictions


@pytest.mark.django_db
@settings(
    max_examples=150,
    deadline=dt.timedelta(seconds=2),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    features=mappings,
    output=payloads,
    metadata=mappings,
    confidence=confidences,
    latency_ms=latencies,
)
# -0.0: PostgreSQL's jsonb (numeric) has no negative zero; float columns lose its sign too.
@example(features={"x": -0.0}, output=None, metadata={}, confidence=None, latency_ms=None)
@example(features={"x": [-0.0]}, output=-0.0, metadata={}, confidence=None, latency_ms=None)
@example(features={}, output={"y": {"z": -0.0}}, metadata={"m": -0.0}, confidence=None,
         latency_ms=None)  # fmt: skip
@example(features={"x": 1}, output=None, metadata={}, confidence=-0.0, latency_ms=None)
@example(features={"x": 1}, output=None, metadata={}, confidence=None, latency_ms=-0.0)
@example(features={"x": np.float32(-0.0)}, output=None, metadata={}, confidence=None,
         latency_ms=None)  # fmt: skip
# Whole floats from 2**53 on become the integer they equal; floats below stay floats.
@example(
    features={"a": 2.0**53, "b": 9007199254740991.0, "c": 4503599627370496.5, "d": 1e16},
    output=[1.7976931348623157e308, -1e300, 1e22],
    metadata={"e": 5e-324, "f": 2.2250738585072014e-308, "g": 1e-7, "h": 1.0000000000000002},
    confidence=5e-324,
    latency_ms=1e300,
)
# Integers beyond 64 bits read back exactly from jsonb and from SQLite's JSON text...
@example(
    features={"a": 2**63, "b": -(2**63) - 1, "c": 2**64 + 1, "d": 10**30},
    output=LONGEST_INT,
    metadata={"e": -LONGEST_INT, "f": {"g": [10**400]}},
    confidence=1,
    latency_ms=10**6,
)
# ... up to MAX_INT_DIGITS digits; longer ones cannot be written or read as JSON text by
# Python's default int <-> str limit (4300 digits), and are refused naming the field.
@example(features={"a": 10**MAX_INT_DIGITS}, output=None, metadata={}, confidence=None,
         latency_ms=None)  # fmt: skip
@example(features={}, output=[-(10**5000)], metadata={}, confidence=None, latency_ms=None)
@example(features={}, output=None, metadata={10**MAX_INT_DIGITS: 1}, confidence=None,
         latency_ms=None)  # fmt: skip
# numpy's longdouble has no exact Python (JSON) equivalent: refused naming the field.
@example(features={"a": np.longdouble(1.5)}, output=None, metadata={}, confidence=None,
         latency_ms=None)  # fmt: skip
# Unicode is stored as given (no normalisation): NFC and NFD keys stay two keys.
@example(
    features={"\u00e9": 1, "e\u0301": 2, "\U0001f600": "\u2028\ufeff\uffff\U0010ffff"},
    output="e\u0301",
    metadata={"\x7f": "\u00e9"},
    confidence=None,
    latency_ms=None,
)
# The deepest nesting accepted (MAX_DEPTH levels under the payload) reads back too.
@example(features={"d": _nested(MAX_DEPTH - 1)}, output=_nested(MAX_DEPTH - 1), metadata={},
         confidence=None, latency_ms=None)  # fmt: skip
# An explanation payload of None: JSON null, not SQL NULL (which the column refuses).
@example(features={}, output=None, metadata={}, confidence=None, latency_ms=None)
def test_every_accepted_prediction_reads_back_with_its_hash(
    features: dict[str, Any],
    output: Any,
    metadata: dict[str, Any],
    confidence: Any,
    latency_ms: Any,
) -> None:
    try:
        event = record_prediction_event(
            "exact-model",
            "1",
            features,
            output,
            metadata=metadata,
            confidence=confidence,
            latency_ms=latency_ms,
        )
    except InvalidRecord as exc:  # refused: it must name the argument it was refused in
        refused: InvalidRecord | None = exc
    else:
        refused = None
    if refused is not None:
        assert _argument(refused.field) in GENERATED, refused
        return
    row = PredictionEvent.objects.get(pk=event.pk)  # a fresh read, not the written instance
    for name in ("features", "output", "metadata", "confidence", "latency_ms"):
        assert canonical_json(getattr(row, name)) == canonical_json(getattr(event, name)), name
    assert store.verify_event(row)
    assert store.event_to_record(row).content_hash() == row.content_hash

    explanation = attach_explanation(event, "shap", output)
    stored = Explanation.objects.get(pk=explanation.pk)
    assert canonical_json(stored.payload) == canonical_json(explanation.payload)
    assert store.verify_explanation(stored)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        -0.0,
        {"v": -0.0, "w": [np.float64(-0.0)]},
        None,
        LONGEST_INT,
        {"big": [2**64, -(2**63) - 1], "tiny": 5e-324, "huge": 1e300},
        "e\u0301",
    ],
    ids=["negative-zero", "nested-negative-zero", "none", "longest-int", "numbers", "nfd"],
)
def test_explanation_payloads_read_back_with_their_hash(payload: Any) -> None:
    event = record_prediction_event("exact-model", "1", {"a": 1})
    first = attach_explanation(event, "shap", payload)
    again = attach_explanation(event, "shap", payload)  # the same content: nothing written
    assert again.pk == first.pk
    stored = Explanation.objects.get(pk=first.pk)
    assert canonical_json(stored.payload) == canonical_json(to_json(payload))
    assert store.verify_explanation(stored)


# ------------------------------------------------------------------------------ to_json rules


def test_negative_zero_is_stored_as_zero() -> None:
    for value in (-0.0, np.float64(-0.0), np.float32(-0.0), np.float16(-0.0)):
        result = to_json({"a": value, "b": [value]})
        assert canonical_json(result) == '{"a":0.0,"b":[0.0]}'
    assert canonical_json(to_json(-0.0)) == "0.0"


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": 10**MAX_INT_DIGITS}, "features.a"),
        ({"a": [-(10**MAX_INT_DIGITS)]}, "features.a[0]"),
        ({10**MAX_INT_DIGITS: "x"}, "features.<key>"),
        ({"a": np.longdouble(1.5)}, "features.a"),
    ],
    ids=["int", "negative-int-in-list", "int-key", "longdouble"],
)
def test_values_that_cannot_be_stored_exactly_are_refused_naming_the_path(
    value: Any, path: str
) -> None:
    with pytest.raises(InvalidRecord) as info:
        to_json(value, "features")
    assert info.value.field == path
    with pytest.raises(InvalidRecord) as info:
        PredictionRecord.create(model_name="m", model_version="1", features=value)
    assert info.value.field == path


def test_the_longest_accepted_integer_is_kept() -> None:
    assert to_json({"a": LONGEST_INT, "b": -LONGEST_INT}) == {"a": LONGEST_INT, "b": -LONGEST_INT}


# ------------------------------------------------------------------------------ concurrency

WORKERS = 8
CALLS = 25
PREDICTIONS = 5
DEADLINE = 60  # seconds any one wait may take before the test fails instead of hanging


def _attach_many(worker: int, prediction_pks: list[uuid.UUID], alias: str) -> None:
    """``CALLS`` attachments, spread over the predictions, each with a new payload."""
    for call in range(CALLS):
        pk = prediction_pks[(worker + call) % len(prediction_pks)]
        attach_explanation(
            pk,
            "shap",
            {"worker": worker, "call": call, "zero": -0.0, "big": 2**64},
            summary_text=f"worker {worker} call {call}",
            using=alias,
        )


def _process_worker(
    barrier: Any, results: Any, worker: int, prediction_pks: list[uuid.UUID]
) -> None:
    try:
        store.clear_caches()
        barrier.wait(timeout=DEADLINE)
        _attach_many(worker, prediction_pks, "default")
        results.put(("ok", ""))
    except BaseException as exc:  # report everything, IntegrityError above all
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        connections.close_all()


def _record_predictions(tag: str, alias: str) -> list[uuid.UUID]:
    pks = []
    for i in range(PREDICTIONS):
        record = PredictionRecord.create(
            model_name=f"revision-race-{tag}",
            model_version="1",
            features={"i": i},
            prediction_id=f"revision-race-{tag}-{i}",
        ).redact(RedactionPolicy(), frozenset())
        pks.append(store.write(record, using=alias).pk)
    return pks


def _assert_gapless_revisions(prediction_pks: list[uuid.UUID], alias: str) -> None:
    expected = WORKERS * CALLS // PREDICTIONS
    for pk in prediction_pks:
        rows = list(Explanation.objects.using(alias).filter(prediction_id=pk))
        assert sorted(row.revision for row in rows) == list(range(1, expected + 1)), pk
        assert all(store.verify_explanation(row) for row in rows)
    payloads = {
        (row.payload["worker"], row.payload["call"])
        for row in Explanation.objects.using(alias).filter(prediction_id__in=prediction_pks)
    }
    assert payloads == {(w, c) for w in range(WORKERS) for c in range(CALLS)}  # none lost


def _purge(prediction_pks: list[uuid.UUID], alias: str) -> None:
    with transaction.atomic(using=alias), store.allow_purge(alias):
        Explanation.objects.using(alias).filter(prediction_id__in=prediction_pks).delete()
        PredictionEvent.objects.using(alias).filter(pk__in=prediction_pks).delete()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # committed: the other processes see the predictions
def test_processes_attaching_explanations_get_gapless_revisions() -> None:
    pks = _record_predictions(uuid.uuid4().hex[:8], "default")
    try:
        ctx = multiprocessing.get_context("fork")
        connections.close_all()  # never share a live connection with the children
        barrier = ctx.Barrier(WORKERS)
        results = ctx.Queue()
        processes = [
            ctx.Process(target=_process_worker, args=(barrier, results, worker, pks))
            for worker in range(WORKERS)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=DEADLINE) for _ in processes]
        for process in processes:
            process.join(timeout=DEADLINE)
            assert process.exitcode == 0
        assert [kind for kind, _ in outcomes] == ["ok"] * WORKERS, outcomes
        _assert_gapless_revisions(pks, "default")
    finally:
        _purge(pks, "default")


def test_threads_attaching_explanations_get_gapless_revisions_on_sqlite(
    sqlite_file_alias: str,
) -> None:
    _attach_in_threads(sqlite_file_alias)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # committed: the other connections see the predictions
def test_threads_attaching_explanations_get_gapless_revisions_on_postgresql() -> None:
    _attach_in_threads("default")


def _attach_in_threads(alias: str) -> None:
    pks = _record_predictions(uuid.uuid4().hex[:8], alias)
    errors: list[str] = []
    barrier = threading.Barrier(WORKERS)

    def run(worker: int) -> None:
        try:
            barrier.wait(timeout=DEADLINE)
            _attach_many(worker, pks, alias)
        except BaseException as exc:  # report everything, IntegrityError above all
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connections[alias].close()

    try:
        threads = [threading.Thread(target=run, args=(w,)) for w in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
            assert not thread.is_alive()
        assert errors == []
        _assert_gapless_revisions(pks, alias)
    finally:
        _purge(pks, alias)
