"""``record_outcome`` and ``current_outcome``: the observed outcome of a prediction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ml_audit import store
from ml_audit.conf import audit_settings
from ml_audit.decision_models import Outcome
from ml_audit.models import PredictionEvent
from ml_audit.outcomes.values import check_label, observed_time, outcome_key, outcome_value
from ml_audit.services.explanations import resolve_prediction

__all__ = ["current_outcome", "outcome_history", "record_outcome"]


def record_outcome(
    prediction: PredictionEvent | uuid.UUID | str,
    *,
    value: Any,
    observed_at: dt.datetime | None = None,
    source: str = "",
    recorded_by: str = "",
    using: str | None = None,
) -> Outcome:
    """Append the observed outcome of a prediction (the loan defaulted, the claim was fraud)
    and return the stored :class:`~ml_audit.models.Outcome`.

    ``prediction``: the :class:`~ml_audit.models.PredictionEvent`, its UUID primary key or its
    ``prediction_id`` (as :func:`~ml_audit.attach_explanation` takes it). ``value``: any JSON
    value (normalised as other payloads are; not ``None``; at most
    :data:`~ml_audit.outcomes.values.MAX_VALUE_CHARS` characters of JSON). A label that can be
    compared with the model's ``decision_outcome``, or a number with its ``output``, makes the
    quality view (:mod:`ml_audit.outcomes.quality`) meaningful. ``observed_at``: when it was
    observed (default now), timezone-aware unless ``ML_AUDIT['NAIVE_DATETIME_POLICY']`` is
    ``"utc"``. ``source``: where it came from (a system, a file); ``recorded_by``: who recorded
    it. The tenant is the prediction's.

    Idempotent: the same observation (prediction, value, time observed, source) recorded again
    returns the row already stored and writes nothing. A different observation of the same
    prediction is a new row; the latest observed one is :func:`current_outcome`, the earlier
    ones stay.

    Raises :class:`~ml_audit.exceptions.InvalidRecord` naming the first invalid argument and
    :class:`~ml_audit.exceptions.PredictionNotFound` for an unknown prediction; nothing is
    written then.
    """
    normalised = outcome_value(value)
    observed = observed_time(
        timezone.now() if observed_at is None else observed_at,
        audit_settings.NAIVE_DATETIME_POLICY,
    )
    source = check_label("source", source)
    recorded_by = check_label("recorded_by", recorded_by)
    alias = store.resolve_alias(using)
    event = resolve_prediction(prediction, using=alias)
    key = outcome_key(event.pk, normalised, observed, source)
    existing = Outcome.objects.using(alias).filter(idempotency_key=key).first()
    if existing is not None:
        return existing
    row = Outcome(
        prediction_id=event.pk,
        tenant_id=event.tenant_id,
        value=normalised,
        observed_at=observed,
        source=source,
        recorded_at=timezone.now(),
        recorded_by=recorded_by,
        idempotency_key=key,
    )
    try:
        with transaction.atomic(using=alias):
            row.save(using=alias)
    except IntegrityError:
        # The same observation, recorded by another process since we looked.
        raced = Outcome.objects.using(alias).filter(idempotency_key=key).first()
        if raced is None:
            raise
        return raced
    return row


def current_outcome(
    prediction: PredictionEvent | uuid.UUID | str, *, using: str | None = None
) -> Outcome | None:
    """The prediction's current outcome: the one observed last (ties: the one recorded last),
    or ``None`` when none was recorded. Earlier outcomes: :func:`outcome_history`."""
    alias = store.resolve_alias(using)
    event = resolve_prediction(prediction, using=alias)
    return _outcomes_of(alias, event.pk).first()


def outcome_history(
    prediction: PredictionEvent | uuid.UUID | str, *, using: str | None = None
) -> QuerySet[Outcome]:
    """Every outcome of the prediction, the current one first (a queryset)."""
    alias = store.resolve_alias(using)
    event = resolve_prediction(prediction, using=alias)
    return _outcomes_of(alias, event.pk)


def _outcomes_of(alias: str, prediction_pk: Any) -> QuerySet[Outcome]:
    # The order of "current": observed last, then recorded last (the index on
    # (prediction, observed_at) serves it).
    return (
        Outcome.objects.using(alias)
        .filter(prediction_id=prediction_pk)
        .order_by("-observed_at", "-recorded_at", "-id")
    )
