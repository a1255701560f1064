"""The writer: bulk writes, steady-state cost, caches, aliases and transactions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from ml_audit import store
from ml_audit.models import Explanation, ModelVersion, PredictionEvent, RequestingActor
from ml_audit.records import ActorPayload, PredictionRecord
from ml_audit.services import attach_explanation, record_prediction_event
from tests.factories import redacted

pytestmark = pytest.mark.django_db


def test_write_returns_a_row_that_decodes_to_the_same_record() -> None:
    record = redacted(
        actor=ActorPayload(
            "user", "u1", ip_address="10.1.2.3", user_agent="ua", auth_context={"m": "sso"}
        ),
        latency_ms=3.5,
        metadata={"k": [1, 2]},
    )
    event = store.write(record)
    row = PredictionEvent.objects.select_related("model", "actor").get(pk=event.pk)
    assert store.event_to_record(row) == record
    assert row.content_hash == record.content_hash()


def test_write_refuses_unredacted_records() -> None:
    record = PredictionRecord.create(model_name="m", model_version="1", features={"email": "x"})
    with pytest.raises(ValueError, match="not redacted"):
        store.write(record)
    with pytest.raises(ValueError, match="not redacted"):
        store.write_many([redacted(), record])
    assert PredictionEvent.objects.count() == 0


def test_write_many_reports_created_duplicates_and_conflicts() -> None:
    stored = redacted(prediction_id="b1")
    store.write(stored)
    batch = [
        redacted(prediction_id="b2"),
        redacted(prediction_id="b1"),  # identical to what is stored
        redacted(prediction_id="b1", confidence=0.9),  # conflicts with it
        redacted(prediction_id="b3"),
        redacted(prediction_id="b3"),  # duplicate inside the batch
        redacted(prediction_id="b4", model_name="other", actor=None),
    ]
    result = store.write_many(batch)
    assert result.created == 3
    assert result.duplicates == 2
    assert [c.prediction_id for c in result.conflicts] == ["b1"]
    assert result.conflicts[0].fields == ("confidence",)
    assert [o.created for o in result.outcomes] == [True, False, False, True, False, True]
    assert result.outcomes[4].event is not None
    assert result.outcomes[4].event.pk == result.outcomes[3].event.pk  # type: ignore[union-attr]
    assert PredictionEvent.objects.count() == 4
    assert ModelVersion.objects.count() == 2
    assert RequestingActor.objects.count() == 1
    assert all(
        store.verify_event(e) for e in PredictionEvent.objects.select_related("model", "actor")
    )


def test_write_many_of_nothing_touches_nothing(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        assert store.write_many([]).outcomes == []


def test_bulk_write_of_many_rows_is_chunked() -> None:
    result = store.write_many([redacted(prediction_id=f"bulk-{i}") for i in range(1500)])
    assert result.created == 1500
    assert PredictionEvent.objects.filter(prediction_id__startswith="bulk-").count() == 1500


def test_steady_state_record_is_one_insert(
    django_assert_num_queries: Any, django_capture_on_commit_callbacks: Any
) -> None:
    actor = ActorPayload("user", "42", tenant_id="t")
    with django_capture_on_commit_callbacks(execute=True):
        record_prediction_event("m", "1", {"a": 1}, actor=actor)
    with django_assert_num_queries(1) as ctx:
        record_prediction_event("m", "1", {"a": 2}, actor=actor)
    assert ctx.captured_queries[0]["sql"].lstrip().upper().startswith("INSERT")
    assert PredictionEvent.objects.count() == 2


def test_ids_read_in_a_rolled_back_transaction_are_not_cached(
    django_capture_on_commit_callbacks: Any,
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        record_prediction_event("rolled", "1", {"a": 1}, actor=ActorPayload("user", "r"))
        raise RuntimeError("caller fails")
    assert callbacks == []
    assert store._cached_ids("default", [redacted(model_name="rolled", actor=None)]) == (None, None)
    assert not ModelVersion.objects.filter(model_name="rolled").exists()
    # The next record recreates the model rather than pointing at a vanished id.
    event = record_prediction_event("rolled", "1", {"a": 1})
    assert ModelVersion.objects.get(pk=event.model_id).model_name == "rolled"


def test_caller_rollback_on_the_default_alias_removes_the_row() -> None:
    """Same alias: the audit row is part of the caller's transaction and shares its fate."""
    with pytest.raises(RuntimeError), transaction.atomic():
        record_prediction_event("m", "1", {"a": 1}, prediction_id="inside-tx")
        assert PredictionEvent.objects.filter(prediction_id="inside-tx").exists()
        raise RuntimeError("caller fails after recording")
    assert not PredictionEvent.objects.filter(prediction_id="inside-tx").exists()


@pytest.mark.django_db(databases=["default", "audit"])
@override_settings(ML_AUDIT={"DATABASE_ALIAS": "audit"})
def test_separate_alias_keeps_the_row_when_the_caller_rolls_back() -> None:
    """Separate alias: the audit write is committed on its own connection."""
    with pytest.raises(RuntimeError), transaction.atomic():  # the caller's default-alias work
        record_prediction_event("m", "1", {"a": 1}, prediction_id="survives")
        raise RuntimeError("caller fails after recording")
    assert PredictionEvent.objects.using("audit").filter(prediction_id="survives").exists()
    assert not PredictionEvent.objects.using("default").filter(prediction_id="survives").exists()


@pytest.mark.django_db(databases=["default", "audit"])
@override_settings(ML_AUDIT={"DATABASE_ALIAS": "audit"})
def test_every_audit_read_and_write_uses_the_configured_alias() -> None:
    event = record_prediction_event(
        "m", "1", {"a": 1}, prediction_id="p-audit", actor=ActorPayload("user", "1")
    )
    assert event._state.db == "audit"
    explanation = attach_explanation("p-audit", "shap", {"a": 1.0})
    assert explanation._state.db == "audit"
    again = record_prediction_event(
        "m", "1", {"a": 1}, prediction_id="p-audit", actor=ActorPayload("user", "1")
    )
    assert again.pk == event.pk
    for model in (PredictionEvent, ModelVersion, RequestingActor, Explanation):
        assert model.objects.using("audit").count() == 1
        assert model.objects.using("default").count() == 0


@pytest.mark.django_db(databases=["default", "audit"])
def test_router_sends_ml_audit_models_to_the_audit_alias() -> None:
    from ml_audit.routers import MLAuditRouter

    router = MLAuditRouter()
    with override_settings(ML_AUDIT={"DATABASE_ALIAS": "audit"}):
        assert router.db_for_read(PredictionEvent) == "audit"
        assert router.db_for_write(Explanation) == "audit"
        assert router.allow_migrate("audit", "ml_audit") is True
        assert router.allow_migrate("default", "ml_audit") is False
        assert router.allow_migrate("default", "auth") is None
        from django.contrib.auth.models import User

        assert router.db_for_read(User) is None
        assert router.allow_relation(ModelVersion(), PredictionEvent()) is True
        assert router.allow_relation(User(), PredictionEvent()) is False


def test_verify_event_detects_a_changed_value() -> None:
    event = record_prediction_event("m", "1", {"age": 1})
    row = PredictionEvent.objects.select_related("model", "actor").get(pk=event.pk)
    assert store.verify_event(row)
    row.features["age"] = 2
    assert not store.verify_event(row)


def test_cached_one_row_insert_matches_what_django_compiles() -> None:
    """The steady-state single-row INSERT reuses its SQL; its parameters must be Django's."""
    record = redacted(
        actor=ActorPayload("user", "u1", ip_address="10.0.0.1", auth_context={"k": [1]}),
        output=None,
        metadata={"m": "ü"},
        latency_ms=1.25,
    )
    event = store._event_from_record(
        "default", record, model_id=uuid.UUID(int=1), actor_id=uuid.UUID(int=2)
    )
    sql, params = store._compile_one("default", event)
    assert "RETURNING" in sql.upper()
    assert [str(p) for p in store._one_row_params("default", event)] == [str(p) for p in params]


@pytest.mark.postgres
def test_postgres_batches_are_copied_through_a_temporary_table() -> None:
    """COPY path: same outcomes as the INSERT path, nothing left in the temporary table."""
    from django.db import connection

    store.write(redacted(prediction_id="c-0"))
    batch = [redacted(prediction_id=f"c-{i}") for i in range(5)] + [redacted(prediction_id="c-1")]
    result = store.write_many(batch)
    assert [o.created for o in result.outcomes] == [False, True, True, True, True, False]
    assert PredictionEvent.objects.filter(prediction_id__startswith="c-").count() == 5
    assert all(store.verify_event(e) for e in PredictionEvent.objects.select_related("model"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ml_audit_ingest")
        assert cursor.fetchone() == (0,)


@pytest.mark.postgres
def test_copy_path_survives_a_rolled_back_first_use() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        store.write_many([redacted(prediction_id="r-1"), redacted(prediction_id="r-2")])
        raise RuntimeError("the temporary table's creation rolls back with this")
    result = store.write_many([redacted(prediction_id="r-3"), redacted(prediction_id="r-4")])
    assert result.created == 2


def test_append_explanation_of_finds_the_prediction_by_its_id() -> None:
    from ml_audit.exceptions import PredictionNotFound
    from ml_audit.services import explanation_record

    record = explanation_record("shap", {"x": 1.0}, "x helped")
    with pytest.raises(PredictionNotFound, match="'later'"):
        store.append_explanation_of("later", record)
    assert Explanation.objects.count() == 0
    event = store.write(redacted(prediction_id="later"))
    assert store.append_explanation_of("later", record) is True
    assert store.append_explanation_of("later", record) is False  # identical: nothing written
    (row,) = Explanation.objects.filter(prediction=event)
    assert (row.method, row.payload, row.revision) == ("shap", {"x": 1.0}, 1)
