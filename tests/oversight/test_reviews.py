"""record_review and effective_outcome: validation, who reviewed, redaction, tenants, time,
append-only rows, and the effective outcome in one query."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils import timezone

import ml_audit
from ml_audit.decision_models import Review, ReviewAction
from ml_audit.exceptions import AppendOnlyError, InvalidRecord, PredictionNotFound
from ml_audit.models import PredictionEvent
from ml_audit.oversight import effective_outcome, record_review, with_effective_outcome
from ml_audit.oversight.reviews import MAX_REVIEW_COMMENT, check_review
from ml_audit.records import ActorPayload
from tests.oversight.conftest import T0, make_user, predict

pytestmark = pytest.mark.django_db

OFFICER = {"actor_type": "service", "actor_id": "loan-desk"}


def test_public_names_resolve_lazily() -> None:
    assert ml_audit.record_review is record_review
    assert ml_audit.effective_outcome is effective_outcome


def test_a_user_confirms(prediction: PredictionEvent) -> None:
    alice = make_user("alice")
    review = record_review(prediction, reviewer=alice, action="confirm", reason="looks right")

    stored = Review.objects.get()
    assert stored.pk == review.pk
    assert (stored.prediction_id, stored.tenant_id) == (prediction.pk, "acme")
    assert (stored.action, stored.final_outcome) == ("confirm", "")
    assert (stored.reviewer_type, stored.reviewer_id) == ("user", "alice")
    assert (stored.reason, stored.comment) == ("looks right", "")
    assert stored.redaction["paths"] == {}
    assert stored.redaction["policy"]  # the policy version the texts went through
    assert abs(stored.created_at - timezone.now()) < dt.timedelta(seconds=30)
    assert len(stored.trace_id) == 32
    assert len(stored.span_id) == 16


def test_an_actor_overrides(prediction: PredictionEvent) -> None:
    review = record_review(
        prediction,
        reviewer=ActorPayload("service", "loan-desk", tenant_id="acme", ip_address="10.0.0.1"),
        action=ReviewAction.OVERRIDE,
        final_outcome=" approve ",
        reason="income verified",
    )
    assert (review.action, review.final_outcome) == ("override", "approve")
    # Only who reviewed is kept; a request's details describe a prediction request.
    assert (review.reviewer_type, review.reviewer_id) == ("service", "loan-desk")
    assert Review.objects.get().reviewer_id == "loan-desk"


def test_a_dict_reviewer_and_lookups_by_prediction_id_and_uuid(
    prediction: PredictionEvent,
) -> None:
    record_review("loan-1", reviewer=OFFICER, action="escalate")
    record_review(prediction.pk, reviewer=OFFICER, action="contest_received")
    record_review(str(prediction.pk), reviewer=OFFICER, action="contest_resolved")
    assert sorted(Review.objects.values_list("action", flat=True)) == [
        "contest_received",
        "contest_resolved",
        "escalate",
    ]
    assert set(Review.objects.values_list("prediction_id", flat=True)) == {prediction.pk}


def test_a_prediction_id_that_looks_like_a_uuid_wins_over_the_primary_key() -> None:
    other = predict("first")
    target = predict(str(other.pk), tenant="globex")  # its prediction_id is other's UUID
    review = record_review(
        str(other.pk), reviewer=OFFICER | {"tenant_id": "globex"}, action="confirm"
    )
    assert review.prediction_id == target.pk
    assert review.tenant_id == "globex"


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"action": "approve"}, "action", "must be one of confirm, override, escalate"),
        ({"action": None}, "action", "not None"),
        ({"action": "override"}, "final_outcome", "is required for an override"),
        ({"action": "override", "final_outcome": "  "}, "final_outcome", "is required"),
        ({"action": "confirm", "final_outcome": "approve"}, "final_outcome", "only an override"),
        ({"action": "override", "final_outcome": "x" * 129}, "final_outcome", "limit is 128"),
        ({"action": "override", "final_outcome": 1}, "final_outcome", "must be a string"),
        ({"action": "confirm", "reason": "r" * 256}, "reason", "limit is 255"),
        ({"action": "confirm", "reason": 5}, "reason", "must be a string"),
        ({"action": "confirm", "comment": "c" * (MAX_REVIEW_COMMENT + 1)}, "comment", "limit"),
        ({"action": "confirm", "comment": "a\x00b"}, "comment", "NUL"),
    ],
)
def test_bad_fields_are_refused_by_name_and_nothing_is_written(
    prediction: PredictionEvent, kwargs: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidRecord, match=message) as caught:
        record_review(prediction, reviewer=OFFICER, **kwargs)
    assert caught.value.field == field
    assert not Review.objects.exists()


@pytest.mark.parametrize(
    ("reviewer", "field", "message"),
    [
        (None, "reviewer", "is required"),
        (AnonymousUser(), "reviewer", "anonymous user"),
        ("alice", "reviewer", "must be a Django user, an ActorPayload or a dict"),
        (42, "reviewer", "not int"),
        ({"actor_type": "service"}, "reviewer.actor_id", "is required"),
        ({"actor_type": "robot", "actor_id": "r"}, "reviewer.actor_type", "must be one of"),
        ({"actor_type": "user", "actor_id": ""}, "reviewer.actor_id", "must not be empty"),
        ({"actor_type": "user", "actor_id": "u", "role": "x"}, "reviewer", "unknown field"),
        (
            {"actor_type": "user", "actor_id": "u", "tenant_id": "globex"},
            "reviewer.tenant_id",
            "belongs to tenant 'acme'",
        ),
    ],
)
def test_bad_reviewers_are_refused_clearly(
    prediction: PredictionEvent, reviewer: Any, field: str, message: str
) -> None:
    with pytest.raises(InvalidRecord, match=message) as caught:
        record_review(prediction, reviewer=reviewer, action="confirm")
    assert caught.value.field == field
    assert not Review.objects.exists()


def test_the_tenant_is_always_the_predictions(prediction: PredictionEvent) -> None:
    # An actor of the same tenant, or one that names none; the row's tenant is copied.
    record_review(prediction, reviewer=OFFICER | {"tenant_id": "acme"}, action="confirm")
    record_review(prediction, reviewer=OFFICER, action="confirm")
    assert list(Review.objects.values_list("tenant_id", flat=True)) == ["acme", "acme"]
    untenanted = predict("no-tenant", tenant="")
    with pytest.raises(InvalidRecord, match="belongs to no tenant"):
        record_review(untenanted, reviewer=OFFICER | {"tenant_id": "acme"}, action="confirm")
    assert record_review(untenanted, reviewer=OFFICER, action="confirm").tenant_id == ""


def test_unknown_predictions_are_not_found() -> None:
    for missing in ("nope", uuid.uuid4(), str(uuid.uuid4()), "x" * 300):
        with pytest.raises(PredictionNotFound):
            record_review(missing, reviewer=OFFICER, action="confirm")
    with pytest.raises(InvalidRecord, match="prediction"):
        record_review(12, reviewer=OFFICER, action="confirm")  # type: ignore[arg-type]
    assert not Review.objects.exists()


# ----------------------------------------------------------------------------- redaction


def test_comment_and_reason_are_redacted_by_the_value_detectors(
    prediction: PredictionEvent,
) -> None:
    review = record_review(
        prediction,
        reviewer=OFFICER,
        action="contest_received",
        reason="called from jane@example.com",
        comment=(
            "Applicant (IBAN GB82 WEST 1234 5698 7654 32) says the income is wrong.\nCall back."
        ),
    )
    stored = Review.objects.get(pk=review.pk)
    assert stored.reason == "called from *****"
    assert stored.comment == "Applicant (IBAN *****) says the income is wrong.\nCall back."
    assert stored.redaction["paths"] == {"reason": [""], "comment": [""]}
    assert "jane" not in str(stored.redaction)
    assert "GB82" not in str(stored.redaction)


def test_redaction_follows_the_configured_policy(
    prediction: PredictionEvent, settings: Any
) -> None:
    settings.ML_AUDIT = {"REDACTION": {"MODE": "hash", "HASH_KEY": "k" * 32}}
    review = record_review(
        prediction, reviewer=OFFICER, action="confirm", comment="mail jane@example.com"
    )
    assert review.comment.startswith("mail hmac-sha256:")
    settings.ML_AUDIT = {"REDACTION": {"MODE": "drop"}}
    dropped = record_review(
        prediction, reviewer=OFFICER, action="confirm", comment="mail jane@example.com"
    )
    assert dropped.comment == ""  # drop mode removes a text with a hit whole
    assert dropped.redaction["paths"] == {"comment": [""]}
    assert review.redaction["policy"] != dropped.redaction["policy"]


def test_a_reason_that_outgrows_its_column_once_redacted_is_refused(
    prediction: PredictionEvent, settings: Any
) -> None:
    settings.ML_AUDIT = {"REDACTION": {"MODE": "hash", "HASH_KEY": "k" * 32}}
    reason = "x" * 240 + " a@b.io"  # 247 characters; the pseudonym is 44
    with pytest.raises(InvalidRecord, match="once redacted; the limit is 255") as caught:
        record_review(prediction, reviewer=OFFICER, action="confirm", reason=reason)
    assert caught.value.field == "reason"
    assert not Review.objects.exists()


# ----------------------------------------------------------------------------- time


def test_an_explicit_time_between_the_prediction_and_now(prediction: PredictionEvent) -> None:
    when = T0 + dt.timedelta(days=3)
    assert record_review(prediction, reviewer=OFFICER, action="confirm", at=when).created_at == when
    with pytest.raises(InvalidRecord, match="is before the prediction") as caught:
        record_review(prediction, reviewer=OFFICER, action="confirm", at=T0 - dt.timedelta(1))
    assert caught.value.field == "at"
    with pytest.raises(InvalidRecord, match="is in the future"):
        future = timezone.now() + dt.timedelta(hours=1)
        record_review(prediction, reviewer=OFFICER, action="confirm", at=future)
    with pytest.raises(InvalidRecord, match="naive datetime") as caught:
        record_review(prediction, reviewer=OFFICER, action="confirm", at=dt.datetime(2026, 3, 5))
    assert caught.value.field == "at"
    with pytest.raises(InvalidRecord, match="must be a datetime"):
        record_review(prediction, reviewer=OFFICER, action="confirm", at="2026-03-05")  # type: ignore[arg-type]
    assert Review.objects.count() == 1


# ----------------------------------------------------------------------------- append-only


def test_reviews_are_append_only_in_the_orm(prediction: PredictionEvent) -> None:
    review = record_review(prediction, reviewer=OFFICER, action="confirm")
    review.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        review.save()
    with pytest.raises(AppendOnlyError):
        review.delete()
    with pytest.raises(AppendOnlyError):
        Review.objects.filter(pk=review.pk).update(action="override")
    with pytest.raises(AppendOnlyError):
        Review.objects.all().delete()
    assert Review.objects.get().reason == ""


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ml_audit_review SET final_outcome = 'approve'",
        "DELETE FROM ml_audit_review",
    ],
)
def test_reviews_are_append_only_in_the_database(prediction: PredictionEvent, sql: str) -> None:
    record_review(prediction, reviewer=OFFICER, action="confirm")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert Review.objects.get().final_outcome == ""


def test_the_database_refuses_an_override_without_an_outcome(prediction: PredictionEvent) -> None:
    # The check constraint behind check_review, for rows written around it.
    from django.db import IntegrityError

    row = Review(
        prediction=prediction,
        action="override",
        reviewer_type="user",
        reviewer_id="x",
        created_at=timezone.now(),
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()


@pytest.mark.django_db(databases=["default", "audit"])
@override_settings(ML_AUDIT={"DATABASE_ALIAS": "audit"})
def test_reviews_go_to_the_audit_alias() -> None:
    predict()
    review = record_review("loan-1", reviewer=OFFICER, action="override", final_outcome="approve")
    assert review._state.db == "audit"
    assert Review.objects.using("audit").count() == 1
    assert Review.objects.using("default").count() == 0
    assert effective_outcome("loan-1") == "approve"


# ----------------------------------------------------------------------------- effective outcome


def test_the_effective_outcome_is_the_latest_override_else_the_models(
    prediction: PredictionEvent,
) -> None:
    assert effective_outcome(prediction) == "decline"
    record_review(prediction, reviewer=OFFICER, action="confirm")
    assert effective_outcome(prediction) == "decline"
    at = T0 + dt.timedelta(days=1)
    record_review(prediction, reviewer=OFFICER, action="override", final_outcome="approve", at=at)
    assert effective_outcome(prediction) == "approve"
    # An override recorded later but dated earlier does not supersede the latest one.
    record_review(
        prediction,
        reviewer=OFFICER,
        action="override",
        final_outcome="refer",
        at=at - dt.timedelta(hours=1),
    )
    assert effective_outcome(prediction) == "approve"
    record_review(prediction, reviewer=OFFICER, action="override", final_outcome="decline")
    record_review(prediction, reviewer=OFFICER, action="contest_received")
    assert effective_outcome(prediction) == "decline"
    assert effective_outcome("loan-1") == effective_outcome(prediction.pk) == "decline"
    assert Review.objects.count() == 5  # nothing was replaced


def test_overrides_at_the_same_time_are_ordered_by_id(prediction: PredictionEvent) -> None:
    at = T0 + dt.timedelta(days=1)
    for outcome in ("approve", "refer", "approve-reduced"):
        record_review(prediction, reviewer=OFFICER, action="override", final_outcome=outcome, at=at)
    assert effective_outcome(prediction) == "approve-reduced"


def test_the_effective_outcome_costs_one_query(
    prediction: PredictionEvent, django_assert_num_queries: Any
) -> None:
    record_review(prediction, reviewer=OFFICER, action="override", final_outcome="approve")
    for reference in (prediction, "loan-1", prediction.pk, str(prediction.pk)):
        with django_assert_num_queries(1):
            assert effective_outcome(reference) == "approve"


def test_with_effective_outcome_annotates_a_queryset_in_one_query(
    django_assert_num_queries: Any,
) -> None:
    first, second, third = predict("a"), predict("b"), predict("c", decision_outcome="approve")
    record_review(first, reviewer=OFFICER, action="override", final_outcome="approve")
    record_review(second, reviewer=OFFICER, action="confirm")
    record_review(third, reviewer=OFFICER, action="override", final_outcome="decline")
    with django_assert_num_queries(1):
        found = dict(
            with_effective_outcome(PredictionEvent.objects.all()).values_list(
                "prediction_id",
                "effective_outcome",  # type: ignore[misc]  # an annotation
            )
        )
    assert found == {"a": "approve", "b": "decline", "c": "decline"}


def test_effective_outcome_of_what_does_not_exist() -> None:
    with pytest.raises(PredictionNotFound):
        effective_outcome("nope")
    with pytest.raises(PredictionNotFound):
        effective_outcome(PredictionEvent())
    with pytest.raises(InvalidRecord):
        effective_outcome(None)  # type: ignore[arg-type]


def test_check_review_needs_no_database() -> None:
    fields = check_review(ReviewAction.OVERRIDE, "approve ", " why ", " note ")
    assert (fields.action, fields.final_outcome, fields.reason, fields.comment) == (
        "override",
        "approve",
        "why",
        "note",
    )
