"""One row's seal (ml_audit.sealing.proof): the checks it passes or fails, each kind of tampering
named as ml_audit_verify names it, the inclusion proof checked offline with nothing but hashlib
and hmac, and a bounded number of queries whatever the seal's size."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ml_audit.models import Explanation, PredictionEvent, Seal
from ml_audit.sealing import proof
from ml_audit.sealing.merkle import (
    inclusion_proof,
    leaf_data,
    merkle_root,
    root_from_path,
    verify_inclusion,
)
from ml_audit.sealing.tables import ACCESS, EXPLANATION, PREDICTION
from ml_audit.services import attach_explanation
from tests.seals.helpers import KEY, access_row, db_id, populate, record, seal_now, triggers_off
from tests.seals.test_tampering import rehashed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sealing")]


# ----------------------------------------------------------------------------- audit paths


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962's MTH over leaf hashes, by its recursive definition."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _rfc_path(m: int, hashes: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1's PATH(m, D[n]), by its recursive definition."""
    if len(hashes) == 1:
        return []
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    if m < k:
        return [*_rfc_path(m, hashes[:k]), _mth(hashes[k:])]
    return [*_rfc_path(m - k, hashes[k:]), _mth(hashes[:k])]


def test_audit_paths_are_rfc_6962s_and_lead_to_the_root() -> None:
    for size in range(1, 40):
        leaves = [f"leaf {i}".encode() for i in range(size)]
        hashes = [hashlib.sha256(b"\x00" + data).digest() for data in leaves]
        root = merkle_root(leaves)
        assert _mth(hashes).hex() == root
        for index in range(size):
            computed_root, path = inclusion_proof(leaves, index)
            assert computed_root == root
            assert path == [node.hex() for node in _rfc_path(index, hashes)]
            assert verify_inclusion(leaves[index], index, size, path, root)
            assert not verify_inclusion(b"another leaf", index, size, path, root)
            if size > 1:
                assert not verify_inclusion(leaves[index], (index + 1) % size, size, path, root)
                assert root_from_path(leaves[index], index, size, path[:-1]) != root


def test_malformed_paths_lead_nowhere() -> None:
    leaves = [b"a", b"b", b"c"]
    _root, path = inclusion_proof(leaves, 1)
    assert root_from_path(b"b", 1, 3, [*path, "00" * 32]) is None  # too long
    assert root_from_path(b"b", 1, 3, ["zz" * 32, path[1]]) is None  # not hex
    assert root_from_path(b"b", 1, 3, ["00" * 31, path[1]]) is None  # not 32 bytes
    assert root_from_path(b"b", 3, 3, path) is None  # index out of range
    assert root_from_path(b"b", 0, 0, []) is None
    with pytest.raises(IndexError):
        inclusion_proof(leaves, 3)


# ----------------------------------------------------------------------------- a row's seal


def checks_of(found: proof.RowProof) -> dict[str, bool | None]:
    return {check.name: check.ok for check in found.checks}


def offline_verify(body: dict[str, Any], key: bytes) -> bool:
    """What a third party does with the API's body and the key: nothing of ml_audit's code."""
    proof_part, seal = body["proof"], body["seal"]
    row_hash = proof_part["row_hash"]
    leaf = f"ml_audit.leaf/1|{proof_part['kind']}|{proof_part['row_id']}|{row_hash}"
    assert leaf == proof_part["leaf"]
    node = hashlib.sha256(b"\x00" + leaf.encode("ascii")).digest()
    fn, sn = proof_part["leaf_index"], proof_part["tree_size"] - 1
    for sibling_hex in proof_part["audit_path"]:
        sibling = bytes.fromhex(sibling_hex)
        if fn & 1 or fn == sn:
            node = hashlib.sha256(b"\x01" + sibling + node).digest()
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = hashlib.sha256(b"\x01" + node + sibling).digest()
        fn, sn = fn >> 1, sn >> 1
    head = seal["head"]
    canonical = json.dumps(head, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return bool(
        sn == 0
        and node.hex() == proof_part["root"] == head["root"]
        and head["leaves"] == proof_part["tree_size"]
        and hashlib.sha256(canonical.encode()).hexdigest() == seal["head_hash"]
        and hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest() == seal["mac"]
    )


def test_a_sealed_row_verifies_and_its_proof_checks_offline() -> None:
    events = populate(9)
    seal_now()
    found = proof.prove_row(PREDICTION.kind, events[4].pk)

    assert found.status == "sealed"
    assert found.verified is True
    assert checks_of(found) == {
        "row": True,
        "sealed_hash": True,
        "root": True,
        "inclusion": True,
        "head": True,
        "chain": True,
    }
    assert found.seal is not None
    assert found.seal.id == 1
    assert found.summary.startswith("Verifies: sealed in seal 1")
    body = json.loads(json.dumps(found.as_json()))
    assert body["proof"]["format"] == "ml_audit.inclusion/1"
    assert body["proof"]["row_hash"] == events[4].content_hash == body["content_hash"]
    assert body["proof"]["tree_size"] == found.seal.leaves == 9 + 3 + 2
    assert offline_verify(body, KEY.encode())
    # Another row's proof, or another key, does not pass.
    other = json.loads(json.dumps(proof.prove_row(PREDICTION.kind, events[5].pk).as_json()))
    assert not offline_verify({**body, "proof": {**body["proof"], "leaf_index": 0}}, KEY.encode())
    assert other["proof"]["audit_path"] != body["proof"]["audit_path"]
    assert not offline_verify(body, b"x" * 40)


def test_explanation_and_access_rows_have_proofs_too() -> None:
    populate(3)
    seal_now()
    explanation = Explanation.objects.order_by("id").first()
    assert explanation is not None
    row = access_row(5)
    for kind, pk in ((EXPLANATION.kind, explanation.pk), (ACCESS.kind, row.pk)):
        found = proof.prove_row(kind, pk)
        assert found.verified is (kind == EXPLANATION.kind), found.summary
    # The access row came after the seal: not sealed yet, and not suspicious.
    assert proof.prove_row(ACCESS.kind, row.pk).status == "not_sealed"


def test_not_sealed_yet() -> None:
    event = record(1)
    found = proof.prove_row(PREDICTION.kind, event.pk)
    assert (found.status, found.verified) == ("not_sealed", None)
    assert found.summary == "Not sealed yet: no seal lists this row."
    assert checks_of(found) == {"row": True, "sealed_hash": None}
    assert "no seal has been cut yet" in found.checks[1].message
    assert found.as_json()["proof"] is None
    assert found.as_json()["seal"] is None


def test_an_unsealed_row_from_before_the_horizon_does_not_verify() -> None:
    populate(2)
    seal = seal_now()  # its horizon is a second ahead of now
    late = record(7)
    assert seal is not None
    assert seal.horizon > dt.datetime.now(dt.UTC)
    found = proof.prove_row(PREDICTION.kind, late.pk)
    assert (found.status, found.verified) == ("not_sealed", False)
    assert "inserted_row" in found.summary
    assert found.summary.startswith("Does NOT verify")


def test_a_changed_row_does_not_verify() -> None:
    events = populate(4)
    seal_now()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'decline' WHERE id = %s",
            [db_id(events[2].pk)],
        )
    found = proof.prove_row(PREDICTION.kind, events[2].pk)
    assert found.verified is False
    assert checks_of(found)["row"] is False
    assert "does not match its content_hash" in found.summary
    # The others still verify.
    assert proof.prove_row(PREDICTION.kind, events[1].pk).verified is True


def test_a_rehashed_row_does_not_verify() -> None:
    events = populate(4)
    seal_now()
    new_hash = rehashed(events[3], decision_outcome="decline")
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'decline', content_hash = %s "
            "WHERE id = %s",
            [new_hash, db_id(events[3].pk)],
        )
    found = proof.prove_row(PREDICTION.kind, events[3].pk)
    checks = checks_of(found)
    assert (checks["row"], checks["sealed_hash"], checks["inclusion"]) == (True, False, True)
    assert "content and content_hash were rewritten" in found.summary
    # The proof given out is of the sealed hash, and still checks: the seal is intact.
    assert found.sealed_hash == events[3].content_hash != new_hash


def test_a_changed_member_list_or_head_does_not_verify() -> None:
    events = populate(4)
    seal_now()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM ml_audit_sealmember WHERE row_id = %s", [db_id(events[0].pk)])
    found = proof.prove_row(PREDICTION.kind, events[1].pk)
    assert checks_of(found)["root"] is False
    assert "seal_mismatch" in found.summary
    with triggers_off() as cursor:
        cursor.execute("UPDATE ml_audit_seal SET leaves = leaves - 1 WHERE id = 1")
    found = proof.prove_row(PREDICTION.kind, events[1].pk)
    assert checks_of(found)["head"] is False
    assert "forged_seal_head" in found.summary


def test_a_broken_chain_does_not_verify() -> None:
    first = record(1)
    seal_now()
    second = record(2)
    seal_now()
    assert Seal.objects.count() == 2
    assert proof.prove_row(PREDICTION.kind, first.pk).verified is True
    with triggers_off() as cursor:
        cursor.execute("UPDATE ml_audit_seal SET previous_hash = %s WHERE id = 2", ["ab" * 32])
    # Seal 2 names no head hash: both sides of the link say so.
    for event in (first, second):
        found = proof.prove_row(PREDICTION.kind, event.pk)
        assert checks_of(found)["chain"] is False, found.summary
        assert "broken_chain" in found.summary
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM ml_audit_seal WHERE id = 1")
        cursor.execute("DELETE FROM ml_audit_sealmember WHERE seal_id = 1")
    assert "removed_seal" in proof.prove_row(PREDICTION.kind, second.pk).summary


def test_an_unknown_key_cannot_be_checked(settings: Any) -> None:
    event = record(1)
    seal_now()
    settings.ML_AUDIT = {}
    found = proof.prove_row(PREDICTION.kind, event.pk)
    assert found.verified is None
    assert checks_of(found)["head"] is None
    assert found.summary.startswith("Sealed in seal 1; cannot be fully checked: key id 'test-1'")


def test_a_deleted_row_and_bad_arguments() -> None:
    event = record(1)
    seal_now()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM ml_audit_predictionevent WHERE id = %s", [db_id(event.pk)])
    found = proof.prove_row(PREDICTION.kind, event.pk)
    assert (found.status, found.verified) == ("missing", False)
    missing = proof.prove_row(PREDICTION.kind, uuid.uuid4())
    assert (missing.status, missing.verified, missing.checks) == ("missing", None, [])
    with pytest.raises(ValueError, match="no sealed table of kind 99"):
        proof.prove_row(99, event.pk)
    with pytest.raises(ValueError, match="badly formed"):
        proof.prove_row(PREDICTION.kind, "not-a-uuid")


@pytest.mark.parametrize("rows", [3, 60])
def test_queries_are_bounded_whatever_the_seal_size(rows: int) -> None:
    events = [record(i) for i in range(rows)]
    attach_explanation(events[0], "shap", {"age": 0.1})
    seal_now()
    with CaptureQueriesContext(connection) as sealed:
        assert proof.prove_row(PREDICTION.kind, events[-1].pk).verified is True
    unsealed_event = record(rows + 1)
    with CaptureQueriesContext(connection) as unsealed:
        proof.prove_row(PREDICTION.kind, unsealed_event.pk)
    assert len(sealed) == 4
    assert len(unsealed) == 3


def test_check_seal_of_a_whole_seal() -> None:
    populate(3)
    seal = seal_now()
    assert seal is not None
    checks = proof.check_seal(seal)
    assert [(c.name, c.ok) for c in checks] == [("root", True), ("head", True), ("chain", True)]
    assert proof.overall(checks) is True
    with triggers_off() as cursor:
        cursor.execute("UPDATE ml_audit_sealmember SET row_hash = %s WHERE id = 2", ["00" * 32])
    assert proof.overall(proof.check_seal(seal)) is False


def test_seal_json_is_the_head_and_its_hash() -> None:
    populate(2)
    seal = seal_now()
    body = proof.seal_json(seal)
    assert body["head"]["seal"] == body["id"] == seal.id
    assert (
        body["head"]["root"]
        == body["root"]
        == merkle_root(
            leaf_data(kind, str(row_id), row_hash)
            for kind, row_id, row_hash in seal.members.order_by("id").values_list(
                "kind", "row_id", "row_hash"
            )
        )
    )
    assert body["covered_from"] == body["head"]["covered"][0]
    assert PredictionEvent.objects.count() == 2


def test_the_documented_offline_check_is_right() -> None:
    # docs/tamper-evidence.md's root_of(), run on a real proof: the docs stay true.
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "tamper-evidence.md").read_text()
    code = doc.split("```python\n   import hashlib\n", 1)[1].split("   ```", 1)[0]
    namespace: dict[str, Any] = {"hashlib": hashlib}
    exec("\n".join(line[3:] for line in code.splitlines()), namespace)
    root_of = namespace["root_of"]
    events = populate(5)
    seal_now()
    for event in events:
        body = proof.prove_row(PREDICTION.kind, event.pk).proof_json()
        assert body is not None
        args = (body["leaf"], body["leaf_index"], body["tree_size"], body["audit_path"])
        assert root_of(*args) == body["root"]
        assert root_of(body["leaf"], body["leaf_index"], body["tree_size"] + 5, []) is None
        assert root_of("ml_audit.leaf/1|1|x|y", *args[1:]) != body["root"]
