"""Append-only: the ORM refuses, and the database triggers refuse raw SQL too."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from ml_audit import store
from ml_audit.exceptions import AppendOnlyError
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.services import attach_explanation, record_prediction_event

from .conftest import is_postgres

pytestmark = pytest.mark.django_db


@pytest.fixture
def event() -> PredictionEvent:
    event = record_prediction_event("m", "1", {"age": 1}, {"score": 0.5})
    attach_explanation(event, "shap", {"age": 0.1})
    return event


def test_orm_refuses_every_mutation(event: PredictionEvent) -> None:
    event.decision_outcome = "changed"
    with pytest.raises(AppendOnlyError, match="append-only"):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        PredictionEvent.objects.filter(pk=event.pk).update(decision_outcome="x")
    with pytest.raises(AppendOnlyError):
        PredictionEvent.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        PredictionEvent.objects.bulk_update([event], ["decision_outcome"])
    with pytest.raises(AppendOnlyError):
        PredictionEvent.objects.update_or_create(prediction_id=event.prediction_id)
    with pytest.raises(AppendOnlyError):
        Explanation.objects.all().delete()
    assert isinstance(AppendOnlyError("x"), DatabaseError)
    assert PredictionEvent.objects.get(pk=event.pk).decision_outcome == ""


@pytest.mark.parametrize("table", ["ml_audit_predictionevent", "ml_audit_explanation"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET content_hash = 'forged'",
        "DELETE FROM {table}",
    ],
)
def test_database_rejects_raw_update_and_delete(
    event: PredictionEvent, table: str, statement: str
) -> None:
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement.format(table=table))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE content_hash = 'forged'")
        assert cursor.fetchone() == (0,)
        cursor.execute(f"SELECT count(*) FROM {table}")
        assert cursor.fetchone() == (1,)


@pytest.mark.postgres
@pytest.mark.parametrize("table", ["ml_audit_predictionevent", "ml_audit_explanation"])
def test_postgres_rejects_truncate(event: PredictionEvent, table: str) -> None:
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        # Rows inserted by this test have deferred FK checks pending; settle them first so
        # PostgreSQL reaches the TRUNCATE trigger.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"TRUNCATE {table} CASCADE")
    assert PredictionEvent.objects.count() == 1


@pytest.mark.postgres
def test_postgres_rejects_upsert_that_would_rewrite_a_row(event: PredictionEvent) -> None:
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO ml_audit_predictionevent SELECT * FROM ml_audit_predictionevent "
            "ON CONFLICT (id) DO UPDATE SET content_hash = 'forged'"
        )


@pytest.mark.django_db(transaction=True)
def test_purge_hatch_refuses_to_open_outside_a_transaction() -> None:
    # A transactional test: the flush after it also goes through ml_audit.testing's hatch.
    record_prediction_event("m", "1", {"age": 1})
    with (
        pytest.raises(transaction.TransactionManagementError, match="inside transaction"),
        store.allow_purge(),
    ):
        pass
    with pytest.raises(AppendOnlyError):
        PredictionEvent.objects.all().delete()
    assert PredictionEvent.objects.count() == 1


def test_purge_hatch_allows_delete_only(event: PredictionEvent) -> None:
    with transaction.atomic(), store.allow_purge():
        # UPDATE stays forbidden even with the hatch open.
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("UPDATE ml_audit_predictionevent SET decision_outcome = 'x'")
        Explanation.objects.filter(prediction=event).delete()
        PredictionEvent.objects.filter(pk=event.pk).delete()
    assert PredictionEvent.objects.count() == 0
    assert Explanation.objects.count() == 0


def test_purge_hatch_closes_when_the_block_ends(event: PredictionEvent) -> None:
    with transaction.atomic(), store.allow_purge():
        pass
    with pytest.raises(AppendOnlyError):
        PredictionEvent.objects.all().delete()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM ml_audit_predictionevent")
    assert PredictionEvent.objects.count() == 1
    if not is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM ml_audit_purge_permit")
            assert cursor.fetchone() == (0,)


def test_inserting_new_rows_stays_possible(event: PredictionEvent) -> None:
    record_prediction_event("m", "1", {"age": 2})
    attach_explanation(event, "shap", {"age": 0.2})
    assert PredictionEvent.objects.count() == 2
    assert Explanation.objects.count() == 2
