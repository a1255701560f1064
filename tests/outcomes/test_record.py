"""``record_outcome``: what it stores, what it refuses, and that it is idempotent."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

import ml_audit
from ml_audit.canonical import canonical_json
from ml_audit.decision_models import Outcome
from ml_audit.exceptions import AppendOnlyError, InvalidRecord, PredictionNotFound
from ml_audit.outcomes import current_outcome, outcome_history, record_outcome
from ml_audit.outcomes.values import MAX_VALUE_CHARS
from tests.outcomes.helpers import MONDAY, predict

pytestmark = pytest.mark.django_db

LATER = MONDAY + dt.timedelta(days=30)


def test_records_value_time_source_and_the_predictions_tenant() -> None:
    event = predict(1, tenant="bank-eu")

    row = record_outcome(
        event, value="defaulted", observed_at=LATER, source="core-banking", recorded_by="etl"
    )

    stored = Outcome.objects.get(pk=row.pk)
    assert stored.prediction_id == event.pk
    assert stored.tenant_id == "bank-eu"
    assert stored.value == "defaulted"
    assert stored.observed_at == LATER
    assert stored.source == "core-banking"
    assert stored.recorded_by == "etl"
    assert stored.recorded_at is not None


def test_the_idempotency_key_is_the_sha256_of_the_observation() -> None:
    event = predict(1)

    row = record_outcome(event, value={"days_late": 40}, observed_at=LATER, source="s")

    expected = hashlib.sha256(
        canonical_json(
            {
                "prediction": str(event.pk),
                "value": {"days_late": 40},
                "observed_at": "2026-04-01T12:00:00.000000+00:00",
                "source": "s",
            }
        ).encode()
    ).hexdigest()
    assert row.idempotency_key == expected


def test_the_same_observation_again_returns_the_stored_row_and_adds_nothing() -> None:
    event = predict(1)
    first = record_outcome(event, value="repaid", observed_at=LATER, source="s", recorded_by="a")

    # By prediction_id this time, in another time zone, by someone else: the same observation.
    again = record_outcome(
        event.prediction_id,
        value="repaid",
        observed_at=LATER.astimezone(dt.timezone(dt.timedelta(hours=2))),
        source="s",
        recorded_by="b",
    )

    assert again.pk == first.pk
    assert again.recorded_by == "a"
    assert Outcome.objects.count() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"value": "defaulted"},
        {"observed_at": LATER + dt.timedelta(microseconds=1)},
        {"source": "other"},
    ],
)
def test_a_different_observation_is_a_new_row(change: dict[str, Any]) -> None:
    event = predict(1)
    base: dict[str, Any] = {"value": "repaid", "observed_at": LATER, "source": "s"}
    record_outcome(event, **base)

    record_outcome(event, **{**base, **change})

    assert Outcome.objects.count() == 2


def test_later_outcomes_supersede_earlier_ones_without_erasing_them() -> None:
    event = predict(1)
    late = record_outcome(event, value="defaulted", observed_at=LATER + dt.timedelta(days=60))
    early = record_outcome(
        event, value="current", observed_at=LATER
    )  # recorded after, observed before

    assert current_outcome(event) == late
    assert current_outcome(event.prediction_id) == late
    assert list(outcome_history(event)) == [late, early]
    assert current_outcome(predict(2)) is None


def test_ties_in_observed_time_go_to_the_one_recorded_last() -> None:
    event = predict(1)
    record_outcome(event, value="a", observed_at=LATER)
    second = record_outcome(event, value="b", observed_at=LATER)

    assert current_outcome(event) == second


def test_values_are_normalised_as_other_json() -> None:
    event = predict(1)

    row = record_outcome(
        event,
        value={"amount": decimal.Decimal("10.50"), "on": dt.date(2026, 4, 1), "tags": {"x"}},
        observed_at=LATER,
    )

    assert Outcome.objects.get(pk=row.pk).value == {
        "amount": "10.50",
        "on": "2026-04-01",
        "tags": ["x"],
    }


def test_observed_at_defaults_to_now() -> None:
    before = dt.datetime.now(dt.UTC)
    row = record_outcome(predict(1), value=1)
    assert before <= row.observed_at <= dt.datetime.now(dt.UTC)


def test_a_naive_time_is_refused_unless_the_policy_reads_it_as_utc(settings: Any) -> None:
    event = predict(1)
    naive = dt.datetime(2026, 4, 1, 9, 30)

    with pytest.raises(InvalidRecord, match="observed_at: is a naive datetime"):
        record_outcome(event, value=1, observed_at=naive)
    assert not Outcome.objects.exists()

    settings.ML_AUDIT = {"NAIVE_DATETIME_POLICY": "utc"}
    row = record_outcome(event, value=1, observed_at=naive)
    assert row.observed_at == naive.replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value": None}, "value: must not be None"),
        ({"value": "x" * (MAX_VALUE_CHARS + 1)}, "value: is 16,385 characters long"),
        ({"value": ["x" * 100] * 200}, "value: is 20,601 characters of JSON"),
        ({"value": "a\x00b"}, "value: contains a NUL character"),
        ({"value": object()}, "cannot be stored as JSON"),
        ({"value": 1, "observed_at": "2026-04-01"}, "observed_at: must be a datetime, not str"),
        ({"value": 1, "source": "s" * 256}, "source: is 256 characters long"),
        ({"value": 1, "source": 5}, "source: must be a string"),
        ({"value": 1, "recorded_by": "\ud800"}, "recorded_by: contains an unpaired surrogate"),
    ],
)
def test_invalid_arguments_are_refused_and_nothing_is_stored(
    kwargs: dict[str, Any], message: str
) -> None:
    event = predict(1)
    with pytest.raises(InvalidRecord, match=message):
        record_outcome(event, **kwargs)
    assert not Outcome.objects.exists()


def test_an_unknown_prediction_is_refused() -> None:
    with pytest.raises(PredictionNotFound):
        record_outcome("no-such-prediction", value=1, observed_at=LATER)
    assert not Outcome.objects.exists()


def test_outcomes_are_append_only() -> None:
    row = record_outcome(predict(1), value="repaid", observed_at=LATER)

    row.value = "defaulted"
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        Outcome.objects.all().update(value="defaulted")
    with pytest.raises(AppendOnlyError):
        row.delete()
    # The database refuses it too (triggers of migration 0010).
    table = Outcome._meta.db_table
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET source = 'x'")
    assert Outcome.objects.get().value == "repaid"


def test_exported_lazily_from_the_package() -> None:
    assert ml_audit.record_outcome is record_outcome
    assert ml_audit.current_outcome is current_outcome
    assert {"current_outcome", "record_outcome"} <= set(ml_audit.__all__)
