"""ml_audit_purge: what is past retention and under no hold goes, in recorded batches."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from ml_audit.exceptions import AppendOnlyError, ConfigurationError
from ml_audit.models import (
    AccessLog,
    Explanation,
    ModelVersion,
    PredictionEvent,
    RequestingActor,
)
from ml_audit.retention import place_hold, plan_purge, release_hold, run_purge
from ml_audit.retention_models import PurgedRow, PurgeRecord
from ml_audit.sealing.merkle import leaf_data, merkle_root
from ml_audit.sealing.tables import ACCESS_COLUMNS, access_hash
from tests.retention.helpers import access_row, predict

pytestmark = pytest.mark.django_db


def _ids(rows: Any) -> set[str]:
    return {row.prediction_id for row in rows}


def _run(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("ml_audit_purge", "--json", "--by", "tester", *args, stdout=out)
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def test_dry_run_lists_groups_and_deletes_nothing(retention: dict[str, Any]) -> None:
    predict(0, age_days=500, explain=2)
    predict(1, age_days=500, tenant="globex")
    predict(2, age_days=500, model="fraud")  # 800 days for fraud: kept
    predict(3, age_days=10)
    access_row(300)
    access_row(100)
    outcome = _run()
    assert outcome["executed"] is False
    groups = {(g["target"], g["model_name"], g["tenant_id"]): g for g in outcome["groups"]}
    assert set(groups) == {
        ("prediction", "credit", "acme"),
        ("prediction", "credit", "globex"),
        ("access", "", ""),
    }
    assert groups["prediction", "credit", "acme"]["count"] == 1
    assert groups["prediction", "credit", "acme"]["rule"] == "DEFAULT_DAYS"
    assert groups["access", "", ""]["count"] == 1
    assert PredictionEvent.objects.count() == 4
    assert AccessLog.objects.count() == 2
    assert PurgeRecord.objects.count() == 0


def test_text_output_names_models_tenants_and_rules(retention: dict[str, Any]) -> None:
    predict(0, age_days=500)
    out = io.StringIO()
    call_command("ml_audit_purge", stdout=out)
    text = out.getvalue()
    assert "model 'credit' tenant 'acme': 1 rows" in text
    assert "DEFAULT_DAYS = 400 days" in text
    assert "Dry run: would remove 1 rows" in text


def test_execute_removes_expired_rows_with_their_explanations(retention: dict[str, Any]) -> None:
    old = predict(0, age_days=500, explain=2)
    kept = [predict(1, age_days=10, explain=1), predict(2, age_days=500, model="fraud")]
    outcome = _run("--execute")
    assert outcome["executed"] is True
    assert outcome["removed"] == {"prediction": 1, "explanation": 2}
    assert _ids(PredictionEvent.objects.all()) == _ids(kept)
    assert not Explanation.objects.filter(prediction_id=old.pk).exists()
    assert Explanation.objects.count() == 1
    # The registries stay: other predictions (and the record's hashes) name them.
    assert ModelVersion.objects.filter(model_name="credit").exists()
    assert RequestingActor.objects.filter(actor_id="u1").exists()


def test_each_batch_leaves_a_record_with_tombstones_and_a_merkle_root(
    retention: dict[str, Any],
) -> None:
    events = [predict(i, age_days=500 + i, explain=1 if i == 2 else 0) for i in range(5)]
    hashes = {str(e.pk): e.content_hash for e in events}
    explanation = Explanation.objects.get()
    hashes[str(explanation.pk)] = explanation.content_hash
    result = run_purge(ran_by="tester", execute=True, batch_size=2)
    records = sorted(result.records, key=lambda r: r.batch)
    assert [r.batch for r in records] == [1, 2, 3]
    assert [r.counts["prediction"] for r in records] == [2, 2, 1]
    assert len({r.run_id for r in records}) == 1
    assert sum(r.counts["explanation"] for r in records) == 1
    for record in records:
        stored = PurgeRecord.objects.get(pk=record.pk)
        rows = list(PurgedRow.objects.filter(purge=stored).order_by("kind", "row_id"))
        leaves = sorted((row.kind, str(row.row_id), row.row_hash) for row in rows)
        assert stored.leaves == len(rows) == sum(stored.counts.values())
        assert stored.root == merkle_root(leaf_data(*leaf) for leaf in leaves)
        assert all(hashes[row_id] == row_hash for _, row_id, row_hash in leaves)
        assert stored.ran_by == "tester"
        assert stored.policy["rule"] == "DEFAULT_DAYS"
        assert stored.policy["days"] == 400
        assert stored.policy["policy"]["DEFAULT_DAYS"] == 400
        assert stored.time_from <= stored.time_to
    # Oldest first: the first batch removed the two oldest predictions.
    first = {str(r.row_id) for r in PurgedRow.objects.filter(purge_id=records[0].pk, kind=1)}
    assert first == {str(events[4].pk), str(events[3].pk)}
    assert PurgedRow.objects.count() == 6


def test_holds_keep_rows_until_released(retention: dict[str, Any]) -> None:
    held = predict(0, age_days=500, tenant="acme")
    predict(1, age_days=500, tenant="globex")
    hold = place_hold(reason="Litigation", created_by="alice", tenant_id="acme")
    groups = {g.tenant_id: g for g in plan_purge()}
    assert (groups["acme"].count, groups["acme"].held) == (0, 1)
    result = run_purge(ran_by="t", execute=True)
    assert result.counts == {"prediction": 1, "explanation": 0}
    assert _ids(PredictionEvent.objects.all()) == {held.prediction_id}
    record = result.records[0]
    assert record.policy["holds"] == [str(hold.pk)]
    release_hold(hold, reason="Settled", created_by="alice")
    run_purge(ran_by="t", execute=True)
    assert PredictionEvent.objects.count() == 0


def test_prediction_id_and_time_holds(retention: dict[str, Any]) -> None:
    a = predict(0, age_days=500)
    b = predict(1, age_days=600)
    c = predict(2, age_days=700)
    place_hold(reason="r", created_by="x", prediction_ids=[a.prediction_id])
    place_hold(reason="r", created_by="x", time_from=c.timestamp, time_to=c.timestamp)
    run_purge(ran_by="t", execute=True)
    assert _ids(PredictionEvent.objects.all()) == {a.prediction_id, c.prediction_id}
    assert not PredictionEvent.objects.filter(pk=b.pk).exists()


def test_access_log_has_its_own_period_and_time_holds(retention: dict[str, Any]) -> None:
    old = access_row(300, 1)
    older = access_row(500, 2)
    recent = access_row(100, 3)
    predict(0, age_days=300)  # 300 < 400 days: the prediction stays
    place_hold(reason="r", created_by="x", time_to=older.accessed_at)
    place_hold(reason="r", created_by="x", tenant_id="acme")  # does not reach the access log
    row = AccessLog.objects.values_list(*(c[2:] for c in ACCESS_COLUMNS)).get(pk=old.pk)
    result = run_purge(ran_by="t", execute=True)
    assert result.counts == {"access": 1}
    assert set(AccessLog.objects.values_list("pk", flat=True)) == {older.pk, recent.pk}
    tombstone = PurgedRow.objects.get()
    assert (tombstone.kind, tombstone.row_id) == (3, old.pk)
    assert tombstone.row_hash == access_hash(row)[0]
    assert PredictionEvent.objects.count() == 1


def test_nothing_configured_purges_nothing() -> None:
    predict(0, age_days=5000)
    access_row(5000)
    assert plan_purge() == []
    assert run_purge(ran_by="t", execute=True).total == 0
    assert PredictionEvent.objects.count() == 1


def test_forever_for_a_model_overrides_the_default(settings: Any) -> None:
    settings.ML_AUDIT = {"RETENTION": {"DEFAULT_DAYS": 200, "MODELS": {"loan": None}}}
    predict(0, age_days=300, model="loan")
    predict(1, age_days=300, model="credit")
    run_purge(ran_by="t", execute=True)
    assert _ids(PredictionEvent.objects.all()) == {"loan-acme-0"}


def test_tenant_period_longer_than_the_model_period_wins(settings: Any) -> None:
    settings.ML_AUDIT = {"RETENTION": {"MODELS": {"credit": 200}, "TENANTS": {"bank": 1000}}}
    predict(0, age_days=300, tenant="bank")
    predict(1, age_days=300, tenant="shop")
    predict(2, age_days=300, model="other", tenant="shop")  # no rule: kept
    run_purge(ran_by="t", execute=True)
    assert _ids(PredictionEvent.objects.all()) == {"credit-bank-0", "other-shop-2"}


def test_a_period_below_the_floor_is_refused(settings: Any) -> None:
    settings.ML_AUDIT = {"RETENTION": {"DEFAULT_DAYS": 30}}
    predict(0, age_days=100)
    with pytest.raises(ConfigurationError, match="below the retention floor"):
        run_purge(ran_by="t", execute=True)
    with pytest.raises(CommandError, match="below the retention floor"):
        call_command("ml_audit_purge", "--execute", stdout=io.StringIO())
    assert PredictionEvent.objects.count() == 1
    settings.ML_AUDIT = {
        "RETENTION": {"DEFAULT_DAYS": 30},
        "RETENTION_FLOOR_OVERRIDE": "Synthetic test traffic only; no personal data",
    }
    result = run_purge(ran_by="t", execute=True)
    assert result.counts["prediction"] == 1
    assert result.records[0].policy["policy"]["FLOOR_OVERRIDE"].startswith("Synthetic")


def test_purge_records_are_append_only(retention: dict[str, Any]) -> None:
    predict(0, age_days=500)
    record = run_purge(ran_by="t", execute=True).records[0]
    with pytest.raises(AppendOnlyError):
        PurgeRecord.objects.filter(pk=record.pk).update(ran_by="nobody")
    for sql in (
        "UPDATE ml_audit_purgerecord SET ran_by = 'x'",
        "DELETE FROM ml_audit_purgerecord",
        "UPDATE ml_audit_purgedrow SET row_hash = 'x'",
        "DELETE FROM ml_audit_purgedrow",
    ):
        with (
            pytest.raises(Exception, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql)
    assert PurgedRow.objects.count() == 1


def test_the_hatch_is_closed_outside_a_purge(retention: dict[str, Any]) -> None:
    event = predict(0, age_days=500)
    with pytest.raises(AppendOnlyError):
        PredictionEvent.objects.filter(pk=event.pk).delete()
    with (
        pytest.raises(Exception, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM ml_audit_predictionevent")
    assert PredictionEvent.objects.count() == 1


def test_registry_identities_are_immutable() -> None:
    predict(0, age_days=1)
    model = ModelVersion.objects.get()
    statements = [
        ("UPDATE ml_audit_modelversion SET version = '2.0'", "identity"),
        ("UPDATE ml_audit_modelversion SET model_name = 'other'", "identity"),
        ("UPDATE ml_audit_requestingactor SET actor_id = 'someone'", "identity|append-only"),
        ("UPDATE ml_audit_requestingactor SET tenant_id = 'globex'", "identity|append-only"),
        ("DELETE FROM ml_audit_requestingactor", "append-only|purge role"),
        ("DELETE FROM ml_audit_modelversion", "append-only|purge role"),
    ]
    for sql, message in statements:
        with (
            pytest.raises(Exception, match=message),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql)
    # Provenance may still be added after the first prediction.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ml_audit_modelversion SET commit_hash = 'abc123'")
    model.refresh_from_db()
    assert (model.version, model.commit_hash) == ("1.0", "abc123")
    actor = RequestingActor.objects.get()
    assert (actor.actor_id, actor.tenant_id) == ("u1", "acme")


def test_an_interrupted_purge_leaves_whole_batches(
    retention: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        predict(i, age_days=500)
    from ml_audit.retention import purge as purge_module

    calls = {"n": 0}
    real = purge_module._select_predictions

    def failing(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("connection lost")
        return real(*args)

    monkeypatch.setattr(purge_module, "_select_predictions", failing)
    with pytest.raises(RuntimeError):
        run_purge(ran_by="t", execute=True, batch_size=2)
    assert PredictionEvent.objects.count() == 3
    record = PurgeRecord.objects.get()
    assert record.leaves == PurgedRow.objects.count() == 2


def test_run_ids_differ_per_run(retention: dict[str, Any]) -> None:
    predict(0, age_days=500)
    first = run_purge(ran_by="t", execute=True)
    predict(1, age_days=500)
    second = run_purge(ran_by="t", execute=True)
    assert isinstance(first.run_id, uuid.UUID)
    assert first.run_id != second.run_id
