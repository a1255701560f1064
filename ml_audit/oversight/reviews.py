"""Reviews and overrides: :func:`record_review` appends one act of human oversight to a recorded
prediction; :func:`effective_outcome` says what the decision is once people have looked at it.

A review names who reviewed (a Django user, stored as ``("user", username)``, or an actor:
its ``actor_type`` and ``actor_id``), what they did (:class:`~ml_audit.decision_models
.ReviewAction`), why (``reason``, a short text) and what they wrote (``comment``). An
``override`` carries the ``final_outcome`` that replaces the model's decision; no other action
carries one, so that "the effective outcome" has one source. Reason and comment go through the
value detectors of the redaction policy (as an explanation's summary text does) before they
are stored; ``Review.redaction`` says which of them were changed and under which policy.

The review's tenant is its prediction's, copied from the stored row: there is no tenant
argument, so a review cannot name a tenant its prediction does not have. An actor that names a
tenant must name the prediction's.

Each review is also a span (:mod:`ml_audit.oversight.spans`); its trace and span ids are
stored on the row. Rows are append-only (``AppendOnlyModel`` and the triggers of migration
``0010``): a later review supersedes an earlier one without erasing it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.decision_models import Review, ReviewAction
from ml_audit.exceptions import InvalidRecord, PredictionNotFound
from ml_audit.models import PredictionEvent
from ml_audit.normalise import check_storable_text
from ml_audit.records import ActorPayload
from ml_audit.redaction import RedactionPolicy, redact_values
from ml_audit.validation import (
    MAX_ACTOR_ID,
    MAX_DECISION_OUTCOME,
    MAX_PREDICTION_ID,
    _check_identifier,
    _check_text,
    _check_timestamp,
)

__all__ = [
    "MAX_REVIEW_COMMENT",
    "MAX_REVIEW_REASON",
    "REVIEW_ACTIONS",
    "ReviewFields",
    "Reviewer",
    "check_review",
    "effective_outcome",
    "record_review",
    "resolve_reviewer",
    "with_effective_outcome",
]

#: The actions a review may take, in the order forms list them.
REVIEW_ACTIONS: tuple[str, ...] = tuple(ReviewAction.values)
#: ``Review.reason``'s column: a short, stated reason ("income verified by payslip").
MAX_REVIEW_REASON = 255
#: The longest comment accepted, in characters (the column is unbounded text; this keeps one
#: review a note, not a document).
MAX_REVIEW_COMMENT = 10_000
#: How far in the future an explicit ``at`` may lie: clocks of two hosts disagree a little.
_CLOCK_SKEW = dt.timedelta(minutes=1)
_OVERRIDE = ReviewAction.OVERRIDE.value


@dataclasses.dataclass(frozen=True)
class ReviewFields:
    """The validated fields of a review, before redaction (see :func:`check_review`)."""

    action: str
    final_outcome: str
    reason: str
    comment: str


@dataclasses.dataclass(frozen=True)
class Reviewer:
    """Who reviewed, as stored: ``type`` is ``"user"`` for a Django user (``id`` its username)
    or the actor's type; ``tenant_id`` is the tenant an actor named (``""``: none)."""

    type: str
    id: str
    tenant_id: str = ""


def check_review(
    action: Any, final_outcome: Any = None, reason: Any = "", comment: Any = ""
) -> ReviewFields:
    """The review's fields, validated and stripped; :class:`~ml_audit.exceptions.InvalidRecord`
    naming the first field that is wrong (``action``, ``final_outcome``, ``reason``,
    ``comment``). No database access: the admin form and the API check input with it before
    they look anything up."""
    if isinstance(action, ReviewAction):
        action = action.value
    if not isinstance(action, str) or action not in REVIEW_ACTIONS:
        raise InvalidRecord("action", f"must be one of {', '.join(REVIEW_ACTIONS)}, not {action!r}")
    if final_outcome is None:
        final_outcome = ""
    outcome = _check_text("final_outcome", final_outcome, MAX_DECISION_OUTCOME, allow_empty=True)
    if action == _OVERRIDE and not outcome:
        raise InvalidRecord(
            "final_outcome", "is required for an override: the decision that replaces the model's"
        )
    if action != _OVERRIDE and outcome:
        raise InvalidRecord(
            "final_outcome",
            f"only an override carries a final outcome, not a {action} review (record an "
            "override to change the decision)",
        )
    return ReviewFields(
        action=action,
        final_outcome=outcome,
        reason=_check_text("reason", reason or "", MAX_REVIEW_REASON, allow_empty=True),
        comment=_check_text("comment", comment or "", MAX_REVIEW_COMMENT, allow_empty=True),
    )


def _is_user(value: Any) -> bool:
    """A Django user (or a lazy ``request.user``), recognised by its interface."""
    return callable(getattr(value, "get_username", None)) and hasattr(value, "is_authenticated")


def resolve_reviewer(reviewer: Any) -> Reviewer:
    """Who reviewed, from a Django user, an :class:`~ml_audit.records.ActorPayload` or a dict
    of its fields (``actor_type`` and ``actor_id`` required). Only the type, the id and an
    actor's tenant are kept: the request details an ``ActorPayload`` may carry (IP address,
    user agent, auth context) describe a prediction request, not a review."""
    if reviewer is None:
        raise InvalidRecord(
            "reviewer", "is required: a Django user, or an actor (actor_type and actor_id)"
        )
    if _is_user(reviewer):
        if not reviewer.is_authenticated:
            raise InvalidRecord(
                "reviewer", "is an anonymous user; a review needs a signed-in user or an actor"
            )
        username = _check_identifier(
            "reviewer.username", reviewer.get_username(), MAX_ACTOR_ID, optional=False
        )
        return Reviewer("user", username)
    if not isinstance(reviewer, ActorPayload | Mapping):
        raise InvalidRecord(
            "reviewer",
            "must be a Django user, an ActorPayload or a dict with actor_type and actor_id, "
            f"not {type(reviewer).__name__}",
        )
    try:
        actor = ActorPayload.coerce(reviewer)
    except InvalidRecord as exc:
        field = "reviewer" + exc.field.removeprefix("actor")
        raise InvalidRecord(field, str(exc).split(": ", 1)[1]) from None
    assert actor is not None
    return Reviewer(actor.actor_type, actor.actor_id, actor.tenant_id or "")


def _review_time(at: Any) -> dt.datetime:
    try:
        when = _check_timestamp(at, audit_settings.NAIVE_DATETIME_POLICY)
    except InvalidRecord as exc:
        raise InvalidRecord("at", str(exc).split(": ", 1)[1]) from None
    if when > timezone.now() + _CLOCK_SKEW:
        raise InvalidRecord("at", f"{when.isoformat()} is in the future")
    return when


def _resolve(prediction: Any, alias: str) -> PredictionEvent:
    """The stored prediction: an instance as given, else by ``prediction_id`` or UUID (the
    ``prediction_id`` reading wins, as for ``attach_explanation``)."""
    from ml_audit.services.explanations import resolve_prediction

    return resolve_prediction(prediction, using=alias)


def _redacted(fields: ReviewFields, policy: RedactionPolicy) -> tuple[str, str, dict[str, Any]]:
    """Reason and comment through the policy's value detectors; the ``redaction`` summary
    (``{"policy": version, "paths": {"reason": [""], "comment": [""]}}``, a field listed
    only when something in it was replaced)."""
    paths: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for name in ("reason", "comment"):
        text = getattr(fields, name)
        if not text:
            texts[name] = ""
            continue
        result = redact_values(text, policy)
        value = result.value if isinstance(result.value, str) else ""  # drop mode: removed
        if result.paths:
            paths[name] = list(result.paths)
        texts[name] = value
    if len(texts["reason"]) > MAX_REVIEW_REASON:
        raise InvalidRecord(
            "reason",
            f"is {len(texts['reason'])} characters long once redacted; the limit is "
            f"{MAX_REVIEW_REASON}: keep the reason short and put details in the comment",
        )
    return texts["reason"], texts["comment"], {"policy": policy.version, "paths": paths}


def record_review(
    prediction: PredictionEvent | uuid.UUID | str,
    *,
    reviewer: Any,
    action: ReviewAction | str,
    final_outcome: str | None = None,
    reason: str = "",
    comment: str = "",
    at: dt.datetime | None = None,
    using: str | None = None,
) -> Review:
    """Append a review of ``prediction`` and return it.

    ``prediction``: a :class:`~ml_audit.models.PredictionEvent`, its UUID primary key or its
    ``prediction_id``. ``reviewer``: a Django user (stored as type ``"user"`` with its
    username) or an actor (an :class:`~ml_audit.records.ActorPayload`, or a dict with
    ``actor_type`` and ``actor_id``; one that names a tenant must name the prediction's).
    ``action``: one of :data:`REVIEW_ACTIONS`; an ``override`` needs ``final_outcome`` (at
    most 128 characters), which no other action takes. ``reason`` (at most 255 characters) and
    ``comment`` (at most 10,000) are stored as redacted by the value detectors. ``at``: when
    the review happened (default now; aware, unless ``NAIVE_DATETIME_POLICY`` is ``"utc"``;
    neither before the prediction nor in the future).

    Emits the span ``ml_audit.review <action>`` (see :mod:`ml_audit.oversight.spans`) and
    stores its ids on the row. Raises :class:`~ml_audit.exceptions.InvalidRecord` naming the
    offending argument, and :class:`~ml_audit.exceptions.PredictionNotFound`.
    """
    from ml_audit.oversight import spans

    fields = check_review(action, final_outcome, reason, comment)
    who = resolve_reviewer(reviewer)
    explicit_time = at is not None
    when = _review_time(at)
    if isinstance(prediction, PredictionEvent):
        alias = using or prediction._state.db or resolve_alias()
    else:
        alias = resolve_alias(using)
    event = _resolve(prediction, alias)
    alias = using or event._state.db or alias
    if who.tenant_id and who.tenant_id != event.tenant_id:
        raise InvalidRecord(
            "reviewer.tenant_id",
            f"is {who.tenant_id!r}, but the prediction belongs to "
            f"{'tenant ' + repr(event.tenant_id) if event.tenant_id else 'no tenant'}: an "
            "actor reviews the predictions of its own tenant",
        )
    if explicit_time and when < event.timestamp:
        raise InvalidRecord(
            "at", f"{when.isoformat()} is before the prediction ({event.timestamp.isoformat()})"
        )
    stored_reason, stored_comment, redaction = _redacted(fields, audit_settings.redaction_policy)
    review = Review(
        prediction=event,
        tenant_id=event.tenant_id,
        action=fields.action,
        final_outcome=fields.final_outcome,
        reviewer_type=who.type,
        reviewer_id=who.id,
        reason=stored_reason,
        comment=stored_comment,
        redaction=redaction,
        created_at=when,
    )
    with spans.review_span(review, event, instant=explicit_time) as (trace_id, span_id):
        review.trace_id, review.span_id = trace_id, span_id
        review.save(using=alias)
    return review


def with_effective_outcome(
    queryset: QuerySet[PredictionEvent, Any], name: str = "effective_outcome"
) -> QuerySet[PredictionEvent, Any]:
    """``queryset`` annotated with ``name``: the ``final_outcome`` of each prediction's latest
    override (by ``created_at``, then ``id``), else its ``decision_outcome``. A correlated
    subquery served by the ``(action, prediction)`` index: still one query."""
    latest_override = (
        Review.objects.filter(prediction=OuterRef("pk"), action=_OVERRIDE)
        .order_by("-created_at", "-id")
        .values("final_outcome")[:1]
    )
    return queryset.annotate(**{name: Coalesce(Subquery(latest_override), F("decision_outcome"))})


def effective_outcome(
    prediction: PredictionEvent | uuid.UUID | str, *, using: str | None = None
) -> str:
    """The prediction's effective outcome: its latest override's ``final_outcome``, else the
    model's ``decision_outcome``. One query, for an instance, a UUID primary key or a
    ``prediction_id`` (which wins over a UUID reading of the same string)."""
    if isinstance(prediction, PredictionEvent):
        if prediction._state.adding or prediction.pk is None:
            raise PredictionNotFound("the PredictionEvent instance has not been saved")
        alias = using or prediction._state.db or resolve_alias()
        latest = (
            Review.objects.using(alias)
            .filter(prediction_id=prediction.pk, action=_OVERRIDE)
            .order_by("-created_at", "-id")
            .values_list("final_outcome", flat=True)
            .first()
        )
        return prediction.decision_outcome if latest is None else latest
    queryset = PredictionEvent.objects.using(resolve_alias(using))
    if isinstance(prediction, uuid.UUID):
        match = Q(pk=prediction)
    elif isinstance(prediction, str) and prediction and len(prediction) <= MAX_PREDICTION_ID:
        check_storable_text("prediction", prediction)
        match = Q(prediction_id=prediction)
        with contextlib.suppress(ValueError):
            match |= Q(pk=uuid.UUID(prediction))
    elif isinstance(prediction, str) and prediction:
        raise PredictionNotFound(f"no prediction_id is {len(prediction)} characters long")
    else:
        raise InvalidRecord(
            "prediction",
            "must be a PredictionEvent, a UUID primary key or a prediction_id string, "
            f"not {type(prediction).__name__}",
        )
    found = list(
        with_effective_outcome(queryset.filter(match)).values_list(
            "prediction_id",
            "effective_outcome",  # type: ignore[misc]  # an annotation
        )
    )
    if not found:
        raise PredictionNotFound(
            f"no prediction has the prediction_id or primary key {prediction!r}"
        )
    chosen = next((row for row in found if row[0] == prediction), found[0])
    return str(chosen[1])
