"""Tampering for real: raw SQL with the append-only triggers out of the way, one test per class
of tampering, on SQLite and (with DATABASE_URL) PostgreSQL; verify names each."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from ml_audit import store
from ml_audit.models import PredictionEvent, Seal, SealMember
from ml_audit.sealing import seal_pending
from ml_audit.sealing.heads import head_hash, head_of
from ml_audit.sealing.merkle import leaf_data, merkle_root
from ml_audit.sealing.verifier import verify
from tests.seals.helpers import db_id, findings, populate, record, seal_now, triggers_off

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sealing")]


def uuid7_at(when: dt.datetime) -> uuid.UUID:
    ms = int(when.timestamp() * 1000)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62) | uuid.uuid4().int % (1 << 62))


def rehashed(event: PredictionEvent, **changes: Any) -> str:
    """The content_hash an attacker computes for ``event`` with ``changes`` (no key needed)."""
    return store.event_to_record(event).evolve(**changes).content_hash()


def only(found: dict[str, Any], *names: str) -> None:
    assert set(found) == set(names), found


def test_untampered_trail_has_no_findings() -> None:
    populate()
    seal_now()
    assert findings() == {}


def test_changed_row_without_hash_update() -> None:
    events = populate()
    seal_now()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'decline' WHERE id = %s",
            [db_id(events[2].pk)],
        )
    found = findings()
    only(found, "changed_row")
    assert found["changed_row"]["first"] == {
        "table": "prediction",
        "id": str(events[2].pk),
        "seal": 1,
    }
    assert found["changed_row"]["count"] == 1


def test_changed_row_with_recomputed_content_hash() -> None:
    events = populate()
    seal_now()
    new_hash = rehashed(events[4], decision_outcome="decline")
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'decline', content_hash = %s "
            "WHERE id = %s",
            [new_hash, db_id(events[4].pk)],
        )
    found = findings()
    only(found, "rehashed_row")
    assert found["rehashed_row"]["first"]["id"] == str(events[4].pk)


def test_deleted_row() -> None:
    events = populate()
    seal_now()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM ml_audit_predictionevent WHERE id = %s", [db_id(events[3].pk)])
    found = findings()
    only(found, "deleted_row")
    assert found["deleted_row"]["first"] == {
        "table": "prediction",
        "id": str(events[3].pk),
        "seal": 1,
    }


def _insert_copy(source: PredictionEvent, new_id: uuid.UUID, timestamp: dt.datetime) -> None:
    """INSERT a copy of ``source`` under a new id, prediction id and timestamp, with a valid
    content hash (what someone with the table's credentials can do)."""
    content_hash = rehashed(
        source, event_id=new_id, prediction_id=f"forged-{new_id}", timestamp=timestamp
    )
    columns = [str(f.column) for f in PredictionEvent._meta.concrete_fields]
    replaced = {"id": "%s", "prediction_id": "%s", "timestamp": "%s", "content_hash": "%s"}
    select = ", ".join(replaced.get(column, column) for column in columns)
    params: list[Any] = []
    for column in columns:
        if column == "id":
            params.append(db_id(new_id))
        elif column == "prediction_id":
            params.append(f"forged-{new_id}")
        elif column == "timestamp":
            params.append(
                timestamp
                if connection.vendor == "postgresql"
                else timestamp.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
            )
        elif column == "content_hash":
            params.append(content_hash)
    with triggers_off() as cursor:
        cursor.execute(
            f"INSERT INTO ml_audit_predictionevent ({', '.join(columns)}) "
            f"SELECT {select} FROM ml_audit_predictionevent WHERE id = %s",
            [*params, db_id(source.pk)],
        )


def test_inserted_row() -> None:
    events = populate()
    seal = seal_now()
    assert seal is not None
    # An id from before the horizon (it "existed" when the seal was cut), a current timestamp.
    new_id = uuid7_at(seal.horizon - dt.timedelta(seconds=30))
    _insert_copy(events[0], new_id, seal.horizon + dt.timedelta(minutes=5))
    found = findings()
    only(found, "inserted_row")
    assert found["inserted_row"]["first"] == {"table": "prediction", "id": str(new_id)}


def test_backdated_row() -> None:
    events = populate()
    seal = seal_now()
    assert seal is not None
    then = seal.horizon - dt.timedelta(days=3)
    new_id = uuid7_at(then)
    _insert_copy(events[0], new_id, then)
    found = findings()
    only(found, "backdated_row")
    assert found["backdated_row"]["first"] == {"table": "prediction", "id": str(new_id)}


def _three_seals() -> list[Seal]:
    seals = []
    for batch in range(3):
        for i in range(3):
            record(batch * 10 + i)
        seal = seal_now()
        assert seal is not None
        seals.append(seal)
    assert [s.id for s in seals] == [1, 2, 3]
    return seals


def test_removed_seal() -> None:
    _three_seals()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM ml_audit_sealmember WHERE seal_id = 2")
        cursor.execute("DELETE FROM ml_audit_seal WHERE id = 2")
    found = findings()
    assert found["removed_seal"]["first"] == {"seal": 3}
    # Its rows are in no seal any more, though created before the newest horizon.
    assert found["backdated_row"]["count"] == 3
    assert "forged_seal_head" not in found


def test_reordered_seals() -> None:
    _three_seals()
    with triggers_off() as cursor:
        for table, column in (("ml_audit_sealmember", "seal_id"), ("ml_audit_seal", "id")):
            cursor.execute(f"UPDATE {table} SET {column} = 1000 WHERE {column} = 2")
            cursor.execute(f"UPDATE {table} SET {column} = 2 WHERE {column} = 3")
            cursor.execute(f"UPDATE {table} SET {column} = 3 WHERE {column} = 1000")
    found = findings()
    assert found["reordered_seal"]["first"] == {"seal": 3}
    assert "changed_row" not in found
    assert "deleted_row" not in found


def test_forged_seal_head() -> None:
    """Rewrite a row, its content hash, its sealed hash and the seal's root: every hash agrees
    again, and only the HMAC, which needs the key, gives it away."""
    events = populate()
    seal_now()
    event = events[1]
    new_hash = rehashed(event, decision_outcome="decline")
    members = list(SealMember.objects.filter(seal_id=1).order_by("id"))
    leaves = [
        leaf_data(m.kind, str(m.row_id), new_hash if m.row_id == event.pk else m.row_hash)
        for m in members
    ]
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'decline', content_hash = %s "
            "WHERE id = %s",
            [new_hash, db_id(event.pk)],
        )
        cursor.execute(
            "UPDATE ml_audit_sealmember SET row_hash = %s WHERE kind = 1 AND row_id = %s",
            [new_hash, db_id(event.pk)],
        )
        cursor.execute("UPDATE ml_audit_seal SET root = %s WHERE id = 1", [merkle_root(leaves)])
    found = findings()
    only(found, "forged_seal_head")
    assert found["forged_seal_head"]["first"] == {"seal": 1}


def test_changed_seal_listing() -> None:
    populate()
    seal_now()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM ml_audit_sealmember WHERE id = 2")
    found = findings()
    assert found["seal_mismatch"]["first"] == {"seal": 1}


def test_changed_access_log_and_explanation_rows() -> None:
    events = populate()
    seal_now()
    with triggers_off() as cursor:
        cursor.execute("UPDATE ml_audit_accesslog SET username = 'someone-else'")
        cursor.execute(
            "UPDATE ml_audit_explanation SET summary_text = 'nothing' WHERE prediction_id = %s",
            [db_id(events[1].pk)],
        )
    found = findings()
    only(found, "changed_row")
    assert found["changed_row"]["count"] == 3  # two access-log rows, one explanation


def test_columns_the_content_hash_does_not_cover() -> None:
    """tenant_id is derived from the actor when written: a changed tenant is still found."""
    events = populate()
    seal_now()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET tenant_id = 'globex' WHERE id = %s",
            [db_id(events[5].pk)],
        )
    found = findings()
    only(found, "changed_row")
    assert "tenant_id" in found["changed_row"]["message"]


def test_renamed_model_version_changes_its_predictions() -> None:
    populate()
    seal_now()
    with triggers_off("ml_audit_modelversion") as cursor:  # as the table owner can
        cursor.execute("UPDATE ml_audit_modelversion SET version = '2.0'")
    assert findings()["changed_row"]["count"] == 6


def test_rows_recorded_after_the_seal_are_pending_not_findings() -> None:
    populate()
    seal = seal_pending(now=timezone.now())
    assert seal is not None
    time.sleep(0.01)
    record(99)
    report = verify()
    assert report.findings == {}
    assert report.checked["prediction not sealed yet"] == 1


def test_the_chain_links_each_head() -> None:
    seals = _three_seals()
    assert seals[1].previous_hash == head_hash(head_of(seals[0]))
    assert seals[2].previous_hash == head_hash(head_of(seals[1]))
