"""Purge records are proof, and sealed: ``ml_audit_verify`` recomputes each purge record's root
from its tombstones (``purge_mismatch``), lists the purge runs as notices, and reports a
changed, deleted or inserted purge record or legal hold like any sealed row. Raw SQL with the
append-only triggers out of the way, on SQLite and (with DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from ml_audit.models import PredictionEvent, Seal, SealMember
from ml_audit.retention import place_hold, release_hold, run_purge
from ml_audit.retention_models import LegalHold, PurgedRow, PurgeRecord
from ml_audit.sealing import purges as purges_module
from ml_audit.sealing import sealer
from ml_audit.sealing.findings import Report
from ml_audit.sealing.merkle import leaf_data, merkle_root
from ml_audit.sealing.tables import HOLD, PURGE, hold_fields, purge_fields
from ml_audit.sealing.verifier import verify
from tests.retention.helpers import access_row, predict, seal_at_now
from tests.seals.helpers import db_id, run_verify, triggers_off, verify_json

pytestmark = pytest.mark.django_db

KEY = "p" * 40
RETENTION_TABLES = ("ml_audit_purgerecord", "ml_audit_purgedrow", "ml_audit_legalhold")


@pytest.fixture
def sealed_retention(settings: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "SEAL_KEY": KEY,
        "SEAL_KEY_ID": "purge-test",
        "SEAL_LAG_SECONDS": 0,
        "RETENTION": {"DEFAULT_DAYS": 400, "ACCESS_LOG_DAYS": 200},
    }
    settings.ML_AUDIT = values
    return values


def uuid7_at(when: dt.datetime) -> uuid.UUID:
    ms = int(when.timestamp() * 1000)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62) | uuid.uuid4().int % (1 << 62))


def found(report: Report | None = None) -> dict[str, dict[str, Any]]:
    report = report if report is not None else verify()
    return {name: finding.as_json() for name, finding in report.findings.items()}


def purged_trail(batch_size: int = 2) -> tuple[list[PredictionEvent], LegalHold]:
    """Five old predictions (one held) with an explanation each, a young one, two access-log
    rows (one old); sealed, then purged in batches of ``batch_size`` by alice."""
    events = [predict(i, age_days=500, explain=1) for i in range(5)]
    events.append(predict(9, age_days=10, explain=1))
    access_row(300)
    access_row(10)
    hold = place_hold(
        reason="Subpoena 17", created_by="bob", prediction_ids=[events[0].prediction_id]
    )
    seal_at_now()
    assert verify().ok
    run_purge(ran_by="alice (CHG-1)", execute=True, batch_size=batch_size)
    return events, hold


def prediction_record() -> PurgeRecord:
    """The first batch of the purge of predictions."""
    return PurgeRecord.objects.filter(target="prediction").order_by("batch").first()  # type: ignore[return-value]


# ------------------------------------------------------------------------------ the notices


def test_verify_lists_each_purge_run_and_stays_ok(sealed_retention: dict[str, Any]) -> None:
    events, hold = purged_trail()
    records = list(PurgeRecord.objects.order_by("batch"))
    assert [r.target for r in records] == ["prediction", "prediction", "access"]
    report = verify()
    assert report.ok, report.lines()
    assert report.findings == {}
    assert report.notices == {}
    assert report.checked["purge"] == 3
    assert report.checked["hold"] == 1
    assert report.checked["purged rows"] == 9 == PurgedRow.objects.count()
    (run,) = report.purges
    assert run["run_id"] == str(records[0].run_id)
    assert run["ran_by"] == "alice (CHG-1)"
    assert run["batches"] == 3
    assert run["rows"] == 9
    assert run["counts"] == {"prediction": 4, "explanation": 4, "access": 1}
    assert run["purged_from"] == records[0].purged_at.isoformat(timespec="microseconds")
    assert run["purged_to"] == records[-1].purged_at.isoformat(timespec="microseconds")
    assert run["policy"]["DEFAULT_DAYS"] == 400
    predictions, access = run["groups"]
    assert predictions["target"] == "prediction"
    assert (predictions["model_name"], predictions["tenant_id"]) == ("credit", "acme")
    assert (predictions["rule"], predictions["days"]) == ("DEFAULT_DAYS", 400)
    assert predictions["holds"] == [str(hold.pk)]
    assert predictions["batches"] == 2
    assert predictions["counts"] == {"prediction": 4, "explanation": 4}
    assert predictions["time_from"] == min(e.timestamp for e in events[1:5]).isoformat(
        timespec="microseconds"
    )
    assert (access["target"], access["rule"], access["days"]) == ("access", "ACCESS_LOG_DAYS", 200)
    assert access["counts"] == {"access": 1}
    assert access["cutoff"] == records[-1].policy["cutoff"]


def test_the_command_shows_the_purges_as_text_and_json(sealed_retention: dict[str, Any]) -> None:
    purged_trail()
    status, out = run_verify()
    assert status == 0
    lines = out.splitlines()
    (head,) = [line for line in lines if line.startswith("note purge run ")]
    assert "by alice (CHG-1)" in head
    assert "9 rows (4 prediction, 4 explanation, 1 access) in 3 batches" in head
    assert any(
        "prediction model 'credit' tenant 'acme': 4 prediction, 4 explanation" in line
        and "rule DEFAULT_DAYS (400 days, cutoff " in line
        and "1 hold in force" in line
        for line in lines
    )
    assert any(line.strip().startswith("access: 1 access recorded") for line in lines)
    assert lines[-1].startswith("OK: checked ")
    assert "9 purged rows" in lines[-1]
    status, report = verify_json()
    assert status == 0
    assert report["ok"] is True
    assert report["findings"] == []
    (run,) = report["purges"]
    assert run["counts"] == {"prediction": 4, "explanation": 4, "access": 1}


def test_the_window_selects_purges_by_when_they_ran(sealed_retention: dict[str, Any]) -> None:
    purged_trail()
    tomorrow = timezone.now() + dt.timedelta(days=1)
    later = verify(since=tomorrow)
    assert later.ok
    assert later.purges == []
    assert later.checked["purged rows"] == 0
    earlier = verify(until=tomorrow)
    assert earlier.ok
    assert len(earlier.purges) == 1
    assert earlier.checked["purged rows"] == 9


# ------------------------------------------------------------------------------ purge roots


def test_a_changed_tombstone_is_a_purge_mismatch(sealed_retention: dict[str, Any]) -> None:
    purged_trail()
    record = prediction_record()
    tombstone = PurgedRow.objects.filter(purge=record).order_by("kind", "row_id").first()
    assert tombstone is not None
    with triggers_off(*RETENTION_TABLES) as cursor:
        cursor.execute(
            "UPDATE ml_audit_purgedrow SET row_hash = %s WHERE id = %s", ["0" * 64, tombstone.pk]
        )
    result = found()
    # Its hash is no longer the sealed one either: the row counts as deleted.
    assert set(result) == {"purge_mismatch", "deleted_row"}
    mismatch = result["purge_mismatch"]
    assert mismatch["count"] == 1
    assert mismatch["first"] == {"table": "purge", "id": str(record.pk)}
    assert "hash to another root than the 4 rows it recorded" in mismatch["message"]


def test_a_removed_tombstone_is_a_purge_mismatch(sealed_retention: dict[str, Any]) -> None:
    purged_trail()
    record = prediction_record()
    tombstone = PurgedRow.objects.filter(purge=record, kind=1).first()
    assert tombstone is not None
    with triggers_off(*RETENTION_TABLES) as cursor:
        cursor.execute("DELETE FROM ml_audit_purgedrow WHERE id = %s", [tombstone.pk])
    result = found()
    assert set(result) == {"purge_mismatch", "deleted_row"}
    assert result["purge_mismatch"]["first"]["id"] == str(record.pk)
    assert result["deleted_row"]["first"]["id"] == str(tombstone.row_id)


def test_a_tombstone_added_to_hide_a_deletion_is_a_purge_mismatch(
    sealed_retention: dict[str, Any],
) -> None:
    events, _ = purged_trail()
    record = prediction_record()
    young = events[5]
    sealed_hash = SealMember.objects.get(kind=1, row_id=young.pk).row_hash
    # The young prediction deleted behind the purge's back, with a tombstone carrying the very
    # hash that was sealed: no longer a deleted_row, but the purge's root gives it away.
    with triggers_off("ml_audit_predictionevent", "ml_audit_explanation", *RETENTION_TABLES) as c:
        c.execute("DELETE FROM ml_audit_explanation WHERE prediction_id = %s", [db_id(young.pk)])
        c.execute("DELETE FROM ml_audit_predictionevent WHERE id = %s", [db_id(young.pk)])
        c.execute(
            "INSERT INTO ml_audit_purgedrow (purge_id, kind, row_id, row_hash) "
            "VALUES (%s, 1, %s, %s)",
            [db_id(record.pk), db_id(young.pk), sealed_hash],
        )
    result = found()
    assert "purge_mismatch" in result
    assert result["purge_mismatch"]["first"]["id"] == str(record.pk)
    # The explanation (no tombstone) is still a deleted row; the prediction is not.
    assert result["deleted_row"]["count"] == 1
    assert result["deleted_row"]["first"]["table"] == "explanation"


def test_changed_counts_or_root_of_a_purge_record(sealed_retention: dict[str, Any]) -> None:
    purged_trail()
    record = prediction_record()
    with triggers_off(*RETENTION_TABLES) as cursor:
        cursor.execute(
            "UPDATE ml_audit_purgerecord SET counts = %s WHERE id = %s",
            ['{"prediction": 3, "explanation": 1}', db_id(record.pk)],
        )
    result = found()
    assert set(result) == {"purge_mismatch", "changed_row"}
    assert (
        "counts per table (3 prediction, 1 explanation) differ from its tombstones"
        in (result["purge_mismatch"]["message"])
    )
    # The record is sealed: changing it is a changed row of the purge table.
    assert result["changed_row"]["first"]["table"] == "purge"
    assert result["changed_row"]["first"]["id"] == str(record.pk)
    with triggers_off(*RETENTION_TABLES) as cursor:
        cursor.execute(
            "UPDATE ml_audit_purgerecord SET counts = %s, root = %s WHERE id = %s",
            ['{"prediction": 2, "explanation": 2}', "f" * 64, db_id(record.pk)],
        )
    result = found()
    assert set(result) == {"purge_mismatch", "changed_row"}
    assert "another root" in result["purge_mismatch"]["message"]


@contextmanager
def unchecked() -> Iterator[Any]:
    """A cursor that neither triggers nor foreign keys stop, as the table owner can have:
    PostgreSQL ``session_replication_role = replica`` (no trigger fires, the foreign keys' own
    included), SQLite the triggers dropped (its foreign keys are checked at commit only)."""
    if connection.vendor != "postgresql":
        with triggers_off(*RETENTION_TABLES) as cursor:
            yield cursor
        return
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        try:
            yield cursor
        finally:
            cursor.execute("SET LOCAL session_replication_role = origin")


def test_tombstones_of_a_removed_purge_record(sealed_retention: dict[str, Any]) -> None:
    purged_trail()
    record = prediction_record()
    with unchecked() as cursor:
        cursor.execute("DELETE FROM ml_audit_purgerecord WHERE id = %s", [db_id(record.pk)])
    result = found()
    assert set(result) == {"purge_mismatch", "deleted_row"}
    assert result["purge_mismatch"]["first"] == {"table": "purge", "id": str(record.pk)}
    assert "4 tombstones name purge record" in result["purge_mismatch"]["message"]
    assert "which does not exist" in result["purge_mismatch"]["message"]
    assert result["deleted_row"]["first"]["table"] == "purge"
    assert result["deleted_row"]["first"]["id"] == str(record.pk)
    with unchecked() as cursor:  # the test's end checks foreign keys
        cursor.execute("DELETE FROM ml_audit_purgedrow WHERE purge_id = %s", [db_id(record.pk)])


def test_purge_roots_are_checked_without_seals(settings: Any) -> None:
    settings.ML_AUDIT = {"RETENTION": {"DEFAULT_DAYS": 400, "ACCESS_LOG_DAYS": 200}}
    for i in range(3):
        predict(i, age_days=500, explain=1)
    run_purge(ran_by="tester", execute=True)
    report = verify()
    assert report.ok, report.lines()
    assert report.checked["purge not sealed yet"] == 1
    assert report.purges[0]["rows"] == 6
    with triggers_off(*RETENTION_TABLES) as cursor:
        cursor.execute("DELETE FROM ml_audit_purgedrow WHERE kind = 2")
    result = found()
    assert set(result) == {"purge_mismatch"}
    assert result["purge_mismatch"]["first"]["id"] == str(PurgeRecord.objects.get().pk)


def test_tombstones_stream_in_chunks(
    sealed_retention: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of one purge record spread over many fetches still hash to its root."""
    purged_trail(batch_size=3)
    monkeypatch.setattr(purges_module, "CHUNK", 1)
    report = verify()
    assert report.ok, report.lines()
    assert report.checked["purged rows"] == 9
    record = prediction_record()
    with triggers_off(*RETENTION_TABLES) as cursor:
        cursor.execute(
            "DELETE FROM ml_audit_purgedrow WHERE id = %s",
            [PurgedRow.objects.filter(purge=record).order_by("-kind", "-row_id").first().pk],  # type: ignore[union-attr]
        )
    result = found()
    assert result["purge_mismatch"]["count"] == 1
    assert result["purge_mismatch"]["first"]["id"] == str(record.pk)


def test_a_stored_root_is_recomputed_as_the_purge_computed_it(
    sealed_retention: dict[str, Any],
) -> None:
    purged_trail()
    for record in PurgeRecord.objects.all():
        rows = sorted(
            (t.kind, str(t.row_id), t.row_hash) for t in PurgedRow.objects.filter(purge=record)
        )
        assert record.root == merkle_root(leaf_data(*row) for row in rows)
        assert record.leaves == len(rows)


# ------------------------------------------------------------------------------ sealing


def test_purge_records_and_holds_are_sealed(sealed_retention: dict[str, Any]) -> None:
    _, hold = purged_trail()
    assert SealMember.objects.filter(kind=HOLD.kind, row_id=hold.pk).exists()
    sealed = set(SealMember.objects.filter(kind=PURGE.kind).values_list("row_id", flat=True))
    assert sealed == set(PurgeRecord.objects.values_list("id", flat=True))
    last = Seal.objects.order_by("-id").first()
    assert last is not None
    assert last.counts == {"prediction": 0, "explanation": 0, "access": 0, "purge": 3}
    first = Seal.objects.order_by("id").first()
    assert first is not None
    assert first.counts["hold"] == 1


def test_the_seal_command_and_the_writer_seal_holds(
    sealed_retention: dict[str, Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = place_hold(reason="Audit", created_by="carol", tenant_id="acme")
    out = io.StringIO()
    call_command("ml_audit_seal", stdout=out)
    assert "sealed seal 1: 1 rows (1 hold)" in out.getvalue()
    release = release_hold(hold, reason="Closed", created_by="carol")
    settings.ML_AUDIT = {**sealed_retention, "SEALING": True}
    monkeypatch.setattr(sealer, "_last_run", {})
    seal = sealer.seal_if_due()
    assert seal is not None
    assert seal.counts["hold"] == 1
    assert SealMember.objects.get(kind=HOLD.kind, row_id=release.pk).seal_id == seal.id
    assert verify().ok


def test_a_changed_hold_is_a_changed_row(sealed_retention: dict[str, Any]) -> None:
    hold = place_hold(reason="Subpoena", created_by="bob", tenant_id="acme")
    seal_at_now()
    assert verify().ok
    with triggers_off(*RETENTION_TABLES) as cursor:
        cursor.execute(
            "UPDATE ml_audit_legalhold SET tenant_id = 'globex' WHERE id = %s", [db_id(hold.pk)]
        )
    result = found()
    assert set(result) == {"changed_row"}
    assert result["changed_row"]["first"] == {"table": "hold", "id": str(hold.pk), "seal": 1}


def test_a_deleted_hold_is_a_deleted_row(sealed_retention: dict[str, Any]) -> None:
    hold = place_hold(reason="Subpoena", created_by="bob", tenant_id="acme")
    seal_at_now()
    with triggers_off(*RETENTION_TABLES) as cursor:
        cursor.execute("DELETE FROM ml_audit_legalhold WHERE id = %s", [db_id(hold.pk)])
    result = found()
    assert set(result) == {"deleted_row"}
    assert result["deleted_row"]["first"] == {"table": "hold", "id": str(hold.pk), "seal": 1}


def _insert_hold_copy(source: LegalHold, new_id: uuid.UUID, created_at: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ml_audit_legalhold (id, action, releases_id, tenant_id, actor_type, "
            "actor_id, model_name, prediction_ids, time_from, time_to, reference, reason, "
            "created_by, created_at) SELECT %s, action, releases_id, tenant_id, actor_type, "
            "actor_id, model_name, prediction_ids, time_from, time_to, reference, reason, "
            "created_by, %s FROM ml_audit_legalhold WHERE id = %s",
            [db_id(new_id), created_at, db_id(source.pk)],
        )


def test_an_inserted_or_backdated_hold(sealed_retention: dict[str, Any]) -> None:
    hold = place_hold(reason="Subpoena", created_by="bob", tenant_id="acme")
    seal = seal_at_now()
    assert seal is not None
    inserted = uuid7_at(seal.horizon - dt.timedelta(seconds=30))
    _insert_hold_copy(hold, inserted, seal.horizon + dt.timedelta(minutes=5))
    result = found()
    assert set(result) == {"inserted_row"}
    assert result["inserted_row"]["first"] == {"table": "hold", "id": str(inserted)}
    backdated = uuid7_at(seal.horizon - dt.timedelta(days=30))
    _insert_hold_copy(hold, backdated, seal.horizon - dt.timedelta(days=30))
    result = found()
    assert result["backdated_row"]["first"] == {"table": "hold", "id": str(backdated)}


def test_a_forged_backdated_purge_record(sealed_retention: dict[str, Any]) -> None:
    purged_trail()
    record = prediction_record()
    then = record.purged_at - dt.timedelta(days=10)
    forged = uuid7_at(then)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ml_audit_purgerecord (id, run_id, batch, purged_at, target, model_name, "
            "tenant_id, counts, leaves, root, time_from, time_to, policy, ran_by, database_role) "
            "SELECT %s, run_id, 99, %s, target, model_name, tenant_id, counts, leaves, root, "
            "time_from, time_to, policy, 'mallory', database_role FROM ml_audit_purgerecord "
            "WHERE id = %s",
            [db_id(forged), then, db_id(record.pk)],
        )
    result = found()
    assert set(result) == {"backdated_row", "purge_mismatch"}
    assert result["backdated_row"]["first"] == {"table": "purge", "id": str(forged)}
    # It claims rows that no tombstone lists.
    assert result["purge_mismatch"]["first"]["id"] == str(forged)
    assert "tombstones are gone" in result["purge_mismatch"]["message"]


# ------------------------------------------------------------------------------ row hashes


def _row(table: Any, pk: Any) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(
            table.select(connection.vendor) + f" WHERE {table.alias}.id = %s", [db_id(pk)]
        )
        return tuple(cursor.fetchone())


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def test_purge_records_hash_from_every_column(sealed_retention: dict[str, Any]) -> None:
    purged_trail()
    record = prediction_record()
    row = _row(PURGE, record.pk)
    fields, _ = purge_fields(row)
    assert fields == {
        "schema": 1,
        "table": "purgerecord",
        "id": str(record.pk),
        "run_id": str(record.run_id),
        "batch": record.batch,
        "purged_at": _iso(record.purged_at),
        "target": "prediction",
        "model_name": "credit",
        "tenant_id": "acme",
        "counts": record.counts,
        "leaves": record.leaves,
        "root": record.root,
        "time_from": _iso(record.time_from),
        "time_to": _iso(record.time_to),
        "policy": record.policy,
        "ran_by": "alice (CHG-1)",
        "database_role": record.database_role,
    }
    first = PURGE.rehash(row)
    assert SealMember.objects.get(kind=PURGE.kind, row_id=record.pk).row_hash == first[0]
    changed = list(row)
    changed[13] = "mallory"  # ran_by
    assert PURGE.rehash(changed)[0] != first[0]


def test_holds_hash_from_every_column(sealed_retention: dict[str, Any]) -> None:
    placed = place_hold(
        reason="Subpoena",
        created_by="bob",
        tenant_id="acme",
        prediction_ids=["p-2", "p-1"],
        time_from=timezone.now() - dt.timedelta(days=3),
        reference="CASE-1",
    )
    release = release_hold(placed, reason="Closed", created_by="bob")
    for hold in (placed, release):
        row = _row(HOLD, hold.pk)
        fields, _ = hold_fields(row)
        assert fields == {
            "schema": 1,
            "table": "legalhold",
            "id": str(hold.pk),
            "action": hold.action,
            "releases": str(hold.releases_id) if hold.releases_id else None,
            "tenant_id": hold.tenant_id,
            "actor_type": "",
            "actor_id": "",
            "model_name": "",
            "prediction_ids": hold.prediction_ids,
            "time_from": _iso(hold.time_from),
            "time_to": None,
            "reference": hold.reference,
            "reason": hold.reason,
            "created_by": "bob",
            "created_at": _iso(hold.created_at),
        }
    row = _row(HOLD, placed.pk)
    changed = list(row)
    changed[11] = "Another reason"
    assert HOLD.rehash(changed)[0] != HOLD.rehash(row)[0]


def test_tombstones_of_other_tables_count_in_the_total(settings: Any) -> None:
    """A purge that took rows of a table the seals do not know (kind 6, a review) along: its
    per-table count is not checked by name, the total is."""
    settings.ML_AUDIT = {}
    now = timezone.now()
    leaves = sorted([(1, str(uuid.uuid4()), "a" * 64), (6, str(uuid.uuid4()), "b" * 64)])
    record = PurgeRecord(
        run_id=uuid.uuid4(),
        batch=1,
        purged_at=now,
        target="prediction",
        counts={"prediction": 1, "review": 1, "explanation": 0},
        leaves=2,
        root=merkle_root(leaf_data(*leaf) for leaf in leaves),
        time_from=now,
        time_to=now,
        policy={"rule": "DEFAULT_DAYS", "days": 400, "cutoff": now.isoformat(), "holds": []},
        ran_by="tester",
    )
    record.save()
    PurgedRow.objects.bulk_create(
        [PurgedRow(purge=record, kind=k, row_id=i, row_hash=h) for k, i, h in leaves]
    )
    report = verify()
    assert report.ok, report.lines()
    assert report.purges[0]["counts"] == {"prediction": 1, "review": 1}
    with triggers_off(*RETENTION_TABLES) as cursor:
        cursor.execute(
            "UPDATE ml_audit_purgerecord SET counts = %s WHERE id = %s",
            ['{"prediction": 1, "review": 2}', db_id(record.pk)],
        )
    result = found()
    assert set(result) == {"purge_mismatch"}
    assert "counts per table (1 prediction, 2 review)" in result["purge_mismatch"]["message"]
