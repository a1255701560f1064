"""The verifier's PostgreSQL path (ml_audit.sealing.pgcopy, rowpass, worker) equals the generic
one: COPY lines decode to the rows a cursor returns, the fast hashers give the generic hashers'
hashes wherever they do not decline, and a worker process sharing the snapshot reports exactly
what one process reports."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_audit.sealing import verifier, worker
from ml_audit.sealing.findings import Report
from ml_audit.sealing.pgcopy import (
    PREDICTION_EXPRESSIONS,
    copy_lines,
    decode_line,
    explanation_fast,
    generic_row,
    prediction_fast,
    prediction_generic,
    read_registry,
)
from ml_audit.sealing.rowpass import member_join
from ml_audit.sealing.tables import ACCESS, EXPLANATION, PREDICTION, prediction_hash
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event
from tests.seals.helpers import access_row, findings, populate, seal_now, triggers_off

postgres_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="needs PostgreSQL: DATABASE_URL=postgres://..."
)

ODD_TEXT = "tab\there, line\nbreak\r, back\\slash \\N, é 😀 \x01"


def _odd_trail() -> None:
    """Rows whose COPY text needs decoding, NULLs, tiny floats, no actor, a plain row."""
    record_prediction_event(
        model_name="m",
        model_version="1",
        features={"text": ODD_TEXT, "tiny": 1e-7, "n": 2**70},
        output=None,
        confidence=None,
        latency_ms=None,
        error_message=ODD_TEXT,
        metadata={"k": "\\"},
    )
    event = record_prediction_event(
        model_name="m",
        model_version="1",
        features={"a": 1.5, "b": [1, "x", None]},
        output={"score": 0.25},
        confidence=0.5,
        latency_ms=12.5,
        actor=ActorPayload("user", "u\t1", tenant_id="acme", ip_address="2001:db8::1"),
    )
    attach_explanation(event, "shap", {"a": 0.25, "tiny": 1e-6}, ODD_TEXT)
    attach_explanation(event, "shap", {"a": 0.5}, "plain")
    access_row(1)


def _cursor_rows(table: Any) -> list[list[Any]]:
    sql = table.select("postgresql", ", m.seal_id, m.row_hash") + member_join(table)
    with connection.cursor() as cursor:
        cursor.execute(sql + f" ORDER BY {table.alias}.id")
        return [list(row) for row in cursor.fetchall()]


def _copy_fields(sql: str) -> list[list[Any]]:
    with connection.connection.cursor() as cursor:
        return [decode_line(line) for lines in copy_lines(cursor, sql) for line in lines]


@postgres_only
@pytest.mark.django_db
@pytest.mark.usefixtures("sealing")
def test_copy_lines_decode_to_the_cursor_rows_and_fast_hashes_equal_generic_ones() -> None:
    _odd_trail()
    seal_now()
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        registry = read_registry(cursor)
    # Predictions: the generic row rebuilt from a COPY line (registry from the dicts).
    sql = (
        f"SELECT {', '.join(PREDICTION_EXPRESSIONS)} FROM {PREDICTION.table} p"
        + member_join(PREDICTION)
        + " ORDER BY p.id"
    )
    lines = _copy_fields(sql)
    expected = _cursor_rows(PREDICTION)
    assert [prediction_generic(f, registry) for f in lines] == expected
    fast = [prediction_fast(f, registry, {}) for f in lines]
    assert fast[0] is None  # tiny float, 2**70: the generic hasher's job
    assert fast[1] is not None  # an ordinary row is not declined
    for answer, row in zip(fast, expected, strict=True):
        assert prediction_hash(row[:-2]) == (row[-3], None)
        if answer is not None:
            assert answer == (row[-3], None)
    # Explanations and the access log: same columns, integers converted.
    for table, ints in ((EXPLANATION, [2, 11]), (ACCESS, [8, 10, 13])):
        sql = table.select("postgresql", ", m.seal_id, m.row_hash") + member_join(table)
        lines = _copy_fields(sql + f" ORDER BY {table.alias}.id")
        rows = _cursor_rows(table)
        assert [generic_row(f, ints, ()) for f in lines] == rows
    explanations = _cursor_rows(EXPLANATION)
    answers = [
        explanation_fast(f)
        for f in _copy_fields(
            EXPLANATION.select("postgresql", ", m.seal_id, m.row_hash")
            + member_join(EXPLANATION)
            + " ORDER BY e.id"
        )
    ]
    assert answers[0] is None  # 1e-6 in the payload
    assert answers[1] == (explanations[1][-3], None)


def test_decode_line() -> None:
    assert decode_line("a\\tb\t\\N\t\\\\N\tx\\ny\\\\z\t") == ["a\tb", None, "\\N", "x\ny\\z", ""]
    assert decode_line("\\101\\x41") == ["AA"]


_LINE: list[str | None] = [
    "01900000-0000-7000-8000-000000000001",
    "pred-1",
    "2025-01-02 03:04:05.5",
    "model-id",
    "actor-id",
    "prod",
    "acme",
    "10.0.0.1",
    "agent",
    '{"auth": "session"}',
    "{}",
    '{"policy": "default"}',
    "f" * 64,
    "null",
    "0.5",
    "approve",
    "success",
    "",
    "",
    "12.5",
    "{}",
    "",
    "",
    "",
    "",
    "",  # subject_ref
    "h" * 64,
    "1",
    "h" * 64,
]
_REGISTRY = (
    {"model-id": ("m", "1", {"name": "m", "version": "1"})},
    {"actor-id": ("user", "u1", "acme", {"type": "user", "id": "u1", "tenant": "acme"}, "acme")},
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    features=st.dictionaries(st.text(max_size=5), json_values, max_size=5),
    output=json_values,
    confidence=st.one_of(st.none(), st.floats(min_value=0, max_value=1)),
    spaced=st.booleans(),
)
def test_fast_prediction_hash_equals_the_generic_one(
    features: dict[str, Any], output: Any, confidence: float | None, spaced: bool
) -> None:
    """Where prediction_fast answers, it answers as prediction_hash (JSON as jsonb writes it,
    with spaces, or compact)."""
    separators = (", ", ": ") if spaced else (",", ":")
    line = list(_LINE)
    line[10] = json.dumps(features, separators=separators, ensure_ascii=False)
    line[13] = json.dumps(output, separators=separators, ensure_ascii=False)
    line[14] = None if confidence is None else repr(confidence)
    expected = prediction_hash(prediction_generic(line, _REGISTRY)[:-2])
    answer = prediction_fast(line, _REGISTRY, {})
    assert answer is None or answer == expected


def test_fast_prediction_hash_answers_ordinary_rows_and_declines_odd_ones() -> None:
    line = list(_LINE)
    expected = prediction_hash(prediction_generic(line, _REGISTRY)[:-2])
    assert expected[1] is None
    assert prediction_fast(line, _REGISTRY, {}) == expected
    for index, text in ((10, '{"a": 0.00001}'), (10, '{"a": 123456789012345678901234}')):
        odd = list(line)
        odd[index] = text
        assert prediction_fast(odd, _REGISTRY, {}) is None
        assert prediction_hash(prediction_generic(odd, _REGISTRY)[:-2])[0] != expected[0]
    odd = list(line)
    odd[6] = "globex"  # tenant_id not the actor's
    assert prediction_fast(odd, _REGISTRY, {}) == (
        expected[0],
        "tenant_id differs from the actor's tenant",
    )


def test_reports_merge_as_one_report() -> None:
    one, first, second = Report(), Report(), Report()
    rows = [("changed_row", "b"), ("changed_row", "a"), ("rehashed_row", "c"), ("changed_row", "d")]
    for index, (name, row_id) in enumerate(rows):
        ref = {"table": "prediction", "id": row_id}
        one.add(name, ref, row_id)
        (first if index % 2 else second).add(name, ref, row_id)
    first.add("late_row", {"table": "prediction", "id": "z"}, "late", notice=True)
    one.add("late_row", {"table": "prediction", "id": "z"}, "late", notice=True)
    first.merge(second)
    assert first.as_json()["findings"] == one.as_json()["findings"]
    assert first.findings["changed_row"].count == 3
    assert first.findings["changed_row"].first == {"table": "prediction", "id": "a"}
    assert first.as_json()["notices"] == one.as_json()["notices"]


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sealing")
def test_a_worker_process_reports_what_one_process_reports(monkeypatch: Any) -> None:
    events = populate(12)
    seal_now()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'deny' WHERE id IN (%s, %s)",
            [events[1].pk, events[10].pk],
        )
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET content_hash = %s WHERE id = %s",
            ["0" * 64, events[7].pk],
        )
        cursor.execute("ANALYZE ml_audit_predictionevent")
    started = []
    real_worker = worker.Worker

    def spy(task: Any) -> Any:
        started.append(task)
        return real_worker(task)

    monkeypatch.setattr(verifier, "Worker", spy)
    alone = verifier.verify()
    assert not started
    monkeypatch.setattr(verifier, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(verifier, "WORKER_SHARE", 0.5)
    shared = verifier.verify()
    assert len(started) == 1
    assert findings(shared) == findings(alone)
    assert set(findings(shared)) == {"changed_row"}
    assert findings(shared)["changed_row"]["count"] == 3
    assert shared.checked == alone.checked


@postgres_only
@pytest.mark.django_db
@pytest.mark.usefixtures("sealing")
def test_without_orjson_every_row_takes_the_generic_hasher_with_the_same_report(
    monkeypatch: Any,
) -> None:
    """Where the ``fast`` extra is absent (pgcopy.FAST_HASHERS false) the fast hashers decline
    every line and the verifier finds exactly what it finds with them."""
    from ml_audit.sealing import pgcopy

    _odd_trail()
    events = populate(5)
    seal_now()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'deny' WHERE id = %s",
            [events[2].pk],
        )
    with_fast = verifier.verify()
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        registry = read_registry(cursor)
    sql = f"SELECT {', '.join(PREDICTION_EXPRESSIONS)} FROM {PREDICTION.table} p" + member_join(
        PREDICTION
    )
    lines = _copy_fields(sql)
    assert any(prediction_fast(f, registry, {}) is not None for f in lines)
    monkeypatch.setattr(pgcopy, "FAST_HASHERS", False)
    assert all(prediction_fast(f, registry, {}) is None for f in lines)
    without = verifier.verify()
    assert findings(without) == findings(with_fast)
    assert set(findings(without)) == {"changed_row"}
    assert without.checked == with_fast.checked
