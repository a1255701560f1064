"""Reviews, outcomes, reason codes and subject erasures are sealed (kinds 6-9) and verified like
any sealed row: tampering for real (raw SQL with the append-only triggers out of the way, on
SQLite and, with DATABASE_URL, PostgreSQL) is named with the row's id; forgetting a subject and
purging a prediction with its reviews, outcomes and reason codes leave the trail clean."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection, models

from ml_audit import decision_hashes
from ml_audit.decision_models import Outcome, ReasonCodes, Review
from ml_audit.models import Explanation, PredictionEvent, SealMember
from ml_audit.outcomes import record_outcome
from ml_audit.oversight import record_review
from ml_audit.retention import run_purge
from ml_audit.retention_models import PurgedRow
from ml_audit.sealing import tables
from ml_audit.sealing.proof import prove_row
from ml_audit.sealing.verifier import verify
from ml_audit.services import attach_explanation
from ml_audit.subject_models import SubjectErasure, SubjectKey
from ml_audit.subjects import forget_subject, keys
from tests.reports.helpers import REASON_CODES, SHAP, decide
from tests.retention.helpers import days_ago, seal_at_now
from tests.seals.helpers import SEAL_SETTINGS, db_id, findings, run_verify, triggers_off

pytestmark = pytest.mark.django_db

OFFICER = {"actor_type": "user", "actor_id": "officer-9", "tenant_id": "acme"}
#: Reason codes for model "credit" only (another model's explanations get none).
CREDIT_REASON_CODES = {
    "MODELS": {
        "credit": {
            "FEATURES": REASON_CODES["FEATURES"],
            "ADVERSE_OUTCOMES": ["declined", "referred"],
        }
    }
}


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> Iterator[None]:
    """Sealing (no lag), a subject key, reason codes of declined credit decisions, and a
    retention policy (400 days)."""
    settings.ML_AUDIT = {
        **SEAL_SETTINGS,
        "SUBJECT_KEY": "decision-seal-tests-subject-key-0123456789",
        "REASON_CODES": CREDIT_REASON_CODES,
        "RETENTION": {"DEFAULT_DAYS": 400, "ACCESS_LOG_DAYS": 200},
    }
    keys.clear_cache()
    yield
    keys.clear_cache()


@dataclass
class Trail:
    """One declined decision about a subject with a review, an outcome and reason codes (of
    its explanation), the subject forgotten; a spare explanation without reason codes."""

    event: PredictionEvent
    review: Review
    outcome: Outcome
    codes: ReasonCodes
    erasure: SubjectErasure
    spare: Explanation


def build_trail(*, age_days: float = 0.0) -> Trail:
    event = decide(prediction_id="app-1", subject="applicant-1", when=days_ago(age_days))
    explanation = attach_explanation(event, "shap", SHAP, "Debt ratio drove it.")
    review = record_review(
        event, reviewer=OFFICER, action="override", final_outcome="approved", reason="payslips"
    )
    outcome = record_outcome(event, value={"repaid": True}, source="ledger")
    codes = ReasonCodes.objects.get(explanation=explanation)
    other = decide(prediction_id="app-2", subject=None, model_name="credit-lite")
    spare = attach_explanation(other, "shap", SHAP)  # a model without reason codes
    assert not ReasonCodes.objects.filter(explanation=spare).exists()
    erasure = forget_subject("applicant-1", tenant="acme", reason="Art. 17", erased_by="dpo")
    return Trail(event, review, outcome, codes, erasure, spare)


@dataclass(frozen=True)
class Case:
    """One of the four tables, and how to tamper with a row of it."""

    name: str
    kind: int
    model: type[models.Model]
    attr: str  # the Trail attribute of its row
    change: str  # an UPDATE's SET clause
    recorded: str  # the column of the time it records


CASES = [
    Case("review", 6, Review, "review", "final_outcome = 'declined'", "created_at"),
    Case("outcome", 7, Outcome, "outcome", "source = 'forged'", "recorded_at"),
    Case("reason_codes", 8, ReasonCodes, "codes", "codes = '[]'", "created_at"),
    Case("erasure", 9, SubjectErasure, "erasure", "predictions = 0", "erased_at"),
]
IDS = [case.name for case in CASES]


def row_of(trail: Trail, case: Case) -> models.Model:
    row: models.Model = getattr(trail, case.attr)
    return row


def uuid7_at(when: dt.datetime) -> uuid.UUID:
    ms = int(when.timestamp() * 1000)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62) | uuid.uuid4().int % (1 << 62))


def db_time(value: dt.datetime) -> Any:
    """A time as a raw parameter (SQLite stores naive UTC text)."""
    if connection.vendor == "postgresql":
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")


def insert_copy(trail: Trail, case: Case, new_id: uuid.UUID, recorded: dt.datetime) -> None:
    """INSERT a copy of the trail's row of ``case`` under ``new_id`` recording ``recorded``
    (and, where a column is unique, a new value), as someone with the table's credentials can."""
    source = row_of(trail, case)
    replaced: dict[str, Any] = {"id": db_id(new_id), case.recorded: db_time(recorded)}
    if case.model is Outcome:
        replaced["idempotency_key"] = "f" * 64
    if case.model is ReasonCodes:  # one set of codes per explanation revision
        replaced["explanation_id"] = db_id(trail.spare.pk)
        replaced["prediction_id"] = db_id(trail.spare.prediction_id)
    columns = [str(field.column) for field in case.model._meta.concrete_fields]
    select = ", ".join("%s" if column in replaced else column for column in columns)
    params = [replaced[column] for column in columns if column in replaced]
    table = case.model._meta.db_table
    with triggers_off(table) as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"SELECT {select} FROM {table} WHERE id = %s",
            [*params, db_id(source.pk)],
        )


def only(found: dict[str, Any], *names: str) -> None:
    assert set(found) == set(names), found


# ------------------------------------------------------------------------------ sealing


def test_the_sealed_tables_use_the_decision_hashes() -> None:
    """The sealer reads and hashes these rows exactly as a purge's tombstones do."""
    for decision in decision_hashes.DECISION_TABLES:
        sealed = tables.BY_KIND[decision.kind]
        assert sealed in tables.RECORD_TABLES
        assert (sealed.name, sealed.table, sealed.rehash) == (
            decision.name,
            decision.table,
            decision.rehash,
        )
        for vendor in ("sqlite", "postgresql"):
            assert sealed.expressions(vendor) == decision.expressions(vendor)
    assert tables.BY_KIND[9] is tables.ERASURE
    assert [table.kind for table in tables.SEALED_TABLES] == list(range(1, 10))


def test_reviews_outcomes_reason_codes_and_erasures_are_sealed() -> None:
    trail = build_trail()
    seal = seal_at_now()
    assert seal is not None
    for name in ("review", "outcome", "reason_codes", "erasure"):
        assert seal.counts[name] == 1, seal.counts
    for case in CASES:
        row = row_of(trail, case)
        member = SealMember.objects.get(kind=case.kind, row_id=row.pk)
        assert member.seal_id == seal.id
        proof = prove_row(case.kind, row.pk)
        assert proof.status == "sealed"
        assert proof.sealed_hash == proof.recomputed_hash == member.row_hash
        assert all(check.ok for check in proof.checks), proof.checks
    # The subject key is deleted on forget, by design: nothing of it is sealed.
    assert not SubjectKey.objects.exists()
    assert set(SealMember.objects.values_list("kind", flat=True)) == {1, 2, 6, 7, 8, 9}
    report = verify()
    assert report.findings == {}, report.lines()
    for name in ("review", "outcome", "reason_codes", "erasure"):
        assert report.checked[name] == 1


def test_a_seal_of_none_of_them_keeps_the_three_counts() -> None:
    decide(prediction_id="solo", subject=None, decision="approved")
    seal = seal_at_now()
    assert seal is not None
    assert seal.counts == {"prediction": 1, "explanation": 0, "access": 0}


# ------------------------------------------------------------------------------ tampering


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_changed_row(case: Case) -> None:
    trail = build_trail()
    seal = seal_at_now()
    row = row_of(trail, case)
    table = case.model._meta.db_table
    with triggers_off(table) as cursor:
        cursor.execute(f"UPDATE {table} SET {case.change} WHERE id = %s", [db_id(row.pk)])
        assert cursor.rowcount == 1
    found = findings()
    only(found, "changed_row")
    assert found["changed_row"]["first"] == {"table": case.name, "id": str(row.pk), "seal": seal.id}
    assert found["changed_row"]["count"] == 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_deleted_row(case: Case) -> None:
    trail = build_trail()
    seal = seal_at_now()
    row = row_of(trail, case)
    table = case.model._meta.db_table
    with triggers_off(table) as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [db_id(row.pk)])
        assert cursor.rowcount == 1
    found = findings()
    only(found, "deleted_row")
    assert found["deleted_row"]["first"] == {"table": case.name, "id": str(row.pk), "seal": seal.id}
    status, out = run_verify()
    assert status == 1
    assert "deleted_row" in out
    assert str(row.pk) in out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inserted_row(case: Case) -> None:
    """An id from before the horizon (it "existed" when the seal was cut), a current time."""
    trail = build_trail()
    seal = seal_at_now()
    new_id = uuid7_at(seal.horizon - dt.timedelta(seconds=30))
    insert_copy(trail, case, new_id, seal.horizon + dt.timedelta(minutes=5))
    found = findings()
    only(found, "inserted_row")
    assert found["inserted_row"]["first"] == {"table": case.name, "id": str(new_id)}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backdated_row(case: Case) -> None:
    trail = build_trail()
    seal = seal_at_now()
    then = seal.horizon - dt.timedelta(days=3)
    new_id = uuid7_at(then)
    insert_copy(trail, case, new_id, then)
    found = findings()
    only(found, "backdated_row")
    assert found["backdated_row"]["first"] == {"table": case.name, "id": str(new_id)}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_row_slipped_in_and_sealed_later_is_a_late_row(case: Case) -> None:
    trail = build_trail()
    first = seal_at_now()
    new_id = uuid7_at(first.horizon - dt.timedelta(seconds=30))
    insert_copy(trail, case, new_id, first.horizon - dt.timedelta(seconds=30))
    second = seal_at_now()
    assert second is not None
    assert second.counts[case.name] == 1
    report = verify()
    assert report.findings == {}, report.lines()
    late = report.notices["late_row"].as_json()
    assert late["first"] == {"table": case.name, "id": str(new_id), "seal": second.id}


# ------------------------------------------------------------------------------ forget, purge


def test_forgetting_a_subject_after_sealing_leaves_the_trail_clean() -> None:
    event = decide(prediction_id="app-1", subject="applicant-1")
    record_review(event, reviewer=OFFICER, action="contest_received")
    record_outcome(event, value="defaulted", source="ledger")
    assert SubjectKey.objects.count() == 1
    seal_at_now()
    stored = {row.pk: row.content_hash for row in PredictionEvent.objects.all()}
    status, out = run_verify()
    assert status == 0, out
    erasure = forget_subject("applicant-1", tenant="acme", reason="Art. 17", erased_by="dpo")
    # Forgetting deleted the key and appended an erasure; every sealed row is as it was.
    assert not SubjectKey.objects.exists()
    assert {row.pk: row.content_hash for row in PredictionEvent.objects.all()} == stored
    report = verify()
    assert report.findings == {}, report.lines()
    assert report.checked["erasure not sealed yet"] == 1
    seal = seal_at_now()
    assert seal is not None
    assert seal.counts == {
        "prediction": 0,
        "explanation": 0,
        "access": 0,
        "erasure": 1,
    }
    assert SealMember.objects.filter(kind=9, row_id=erasure.pk).exists()
    report = verify()
    assert report.findings == {}, report.lines()
    assert report.checked["erasure"] == 1


def test_purging_a_prediction_with_its_review_outcome_and_reason_codes_leaves_it_clean() -> None:
    trail = build_trail(age_days=500)
    young = decide(prediction_id="young", subject=None, decision="approved", when=days_ago(5))
    young_review = record_review(young, reviewer=OFFICER, action="contest_received")
    seal_at_now()
    taken = {6: trail.review.pk, 7: trail.outcome.pk, 8: trail.codes.pk}
    for kind, pk in taken.items():
        assert SealMember.objects.filter(kind=kind, row_id=pk).exists()
    result = run_purge(ran_by="retention-test", execute=True)
    assert result.counts["prediction"] == 1
    assert {name: result.counts[name] for name in ("review", "outcome", "reason_codes")} == {
        "review": 1,
        "outcome": 1,
        "reason_codes": 1,
    }
    assert not PredictionEvent.objects.filter(pk=trail.event.pk).exists()
    for kind, pk in taken.items():
        assert PurgedRow.objects.filter(kind=kind, row_id=pk).exists()
        assert SealMember.objects.filter(kind=kind, row_id=pk).exists()  # sealed, and gone
    assert Review.objects.filter(pk=young_review.pk).exists()
    report = verify()
    assert report.findings == {}, report.lines()
    assert report.checked["review"] == 1  # the young prediction's review
    status, out = run_verify()
    assert status == 0, out


def test_a_tombstone_excuses_only_the_hash_that_was_sealed() -> None:
    """A purged review whose sealed hash was rewritten (or a review deleted beside a purge) is
    still a deleted row: the tombstone must name the very hash the seal holds."""
    trail = build_trail(age_days=500)
    seal = seal_at_now()
    run_purge(ran_by="retention-test", execute=True)
    with triggers_off("ml_audit_purgedrow") as cursor:
        cursor.execute(
            "UPDATE ml_audit_purgedrow SET row_hash = %s WHERE kind = 6 AND row_id = %s",
            ["0" * 64, db_id(trail.review.pk)],
        )
        assert cursor.rowcount == 1
    found = findings()
    assert found["deleted_row"]["first"] == {
        "table": "review",
        "id": str(trail.review.pk),
        "seal": seal.id,
    }
    assert found["deleted_row"]["count"] == 1
    assert "purge_mismatch" in found  # the purge record's root no longer matches either
