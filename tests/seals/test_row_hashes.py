"""The verifier's row hashing (ml_audit.sealing.tables) equals the general path: the content
hash the writer stored, ``store.verify_event`` and ``verify_explanation``; its orjson fast path
equals ``canonical_json``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_audit import store
from ml_audit.canonical import canonical_json
from ml_audit.explanation_writer import verify_explanation
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.sealing.merkle import EMPTY_ROOT, MerkleBuilder, merkle_root
from ml_audit.sealing.tables import ACCESS, EXPLANATION, PREDICTION, _canonical_hash, _loads
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event
from tests.seals.helpers import access_row

ODD_FEATURES: list[dict[str, Any]] = [
    {"tiny": 1e-5, "tinier": -3.5e-9, "zero": 0.0, "big": 1.5e300},
    {"huge_int": 2**70, "text": "line\nbreak \u2028 \x01 é 😀", "e-mail": "a-e-b"},
    {"nested": {"b": [1, 2.5, {"z": None, "a": True}], "a": "0.00001"}},
    {},
]


def _rows(table: Any) -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute(table.select(connection.vendor))
        return list(cursor.fetchall())


@pytest.mark.django_db
def test_prediction_rows_hash_as_the_writer_hashed_them() -> None:
    for i, features in enumerate(ODD_FEATURES):
        record_prediction_event(
            model_name="m",
            model_version="1",
            features=features,
            output={"score": 1e-6 * i} if i % 2 else [i, "x"],
            confidence=None if i == 3 else 0.00001 * (i + 1),
            latency_ms=12.5,
            actor=None if i == 2 else ActorPayload("service", f"s{i}", tenant_id=f"t{i % 2}"),
            metadata={"k": i},
        )
    rows = _rows(PREDICTION)
    assert len(rows) == len(ODD_FEATURES)
    for row in rows:
        recomputed, problem = PREDICTION.rehash(row)
        assert problem is None
        assert recomputed == row[-1]
        event = PredictionEvent.objects.get(content_hash=row[-1])
        assert store.verify_event(event)


@pytest.mark.django_db
def test_explanation_rows_hash_as_the_writer_hashed_them() -> None:
    event = record_prediction_event(model_name="m", model_version="1", features={"a": 1})
    for payload in ({"a": 1e-7}, [0.5, "e-"], None, {"deep": {"z": 1, "a": 2}}):
        attach_explanation(event, "shap", payload, "text")
    rows = _rows(EXPLANATION)
    assert len(rows) == 4
    for row in rows:
        assert EXPLANATION.rehash(row) == (row[-1], None)
    assert all(verify_explanation(e) for e in Explanation.objects.all())


@pytest.mark.django_db
def test_access_rows_hash_from_every_column() -> None:
    access_row(1)
    (row,) = _rows(ACCESS)
    first, _ = ACCESS.rehash(row)
    changed = list(row)
    changed[3] = "someone-else"  # username
    assert ACCESS.rehash(changed)[0] != first


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
@given(json_values)
def test_fast_canonical_json_equals_canonical_json(value: Any) -> None:
    text = json.dumps(value)
    parsed, fast = _loads(text)
    expected = hashlib.sha256(canonical_json({"v": json.loads(text)}).encode()).hexdigest()
    assert _canonical_hash({"v": parsed}, fast) == expected


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, recursively."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = _reference_root(leaves[:k]), _reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_streamed_merkle_root_is_rfc_6962() -> None:
    assert merkle_root([]) == EMPTY_ROOT
    for n in range(1, 70):
        leaves = [f"leaf {i}".encode() for i in range(n)]
        assert merkle_root(leaves) == _reference_root(leaves).hex(), n
    builder = MerkleBuilder()
    builder.add(b"a")
    builder.add(b"b")
    assert builder.count == 2
    assert builder.root() != merkle_root([b"b", b"a"])  # order matters
