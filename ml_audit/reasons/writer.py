"""Storing reason codes: with each new explanation revision, and for revisions stored before.

:func:`store_on_write` is called by the explanation writer
(:func:`ml_audit.explanation_writer.append_explanation`) inside its transaction, right after
the revision's INSERT: one more query (the prediction's decision and model name) and one
INSERT, only when ``ML_AUDIT["REASON_CODES"]`` is configured. It never fails the explanation:
whatever goes wrong (a bug, a database error) runs in a savepoint that is rolled back, and is
logged to ``ml_audit.reasons``; the revision is stored without reason codes, and
:func:`backfill` (``manage.py ml_audit_reason_codes --backfill``) can add them later.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.models import Explanation, PredictionEvent, ReasonCodes
from ml_audit.reasons.policy import Derivation, ReasonCodePolicy

__all__ = ["BackfillResult", "backfill", "derive_for", "store_on_write"]

logger = logging.getLogger("ml_audit.reasons")


def derive_for(
    explanation: Explanation,
    *,
    decision: str,
    model_name: str,
    policy: ReasonCodePolicy | None = None,
) -> Derivation | None:
    """The reason codes of ``explanation`` for a prediction of ``model_name`` decided
    ``decision``, under ``policy`` (default: the configured one); ``None`` when no set of the
    policy applies to that model."""
    policy = audit_settings.REASON_CODES if policy is None else policy
    reasons = policy.for_model(model_name)
    if reasons is None:
        return None
    return reasons.derive(decision, explanation.payload)


def _row(explanation: Explanation, derivation: Derivation) -> ReasonCodes:
    return ReasonCodes(
        explanation_id=explanation.pk,
        prediction_id=explanation.prediction_id,
        codes=derivation.codes,
        created_at=dt.datetime.now(dt.UTC),
    )


def _log_unmapped(explanation: Explanation, model_name: str, derivation: Derivation) -> None:
    if derivation.unmapped:
        logger.warning(
            "ml_audit: reason codes of explanation %s (model %r): no code for feature(s) %s; "
            "they keep their rank without a code",
            explanation.pk,
            model_name,
            ", ".join(map(repr, derivation.unmapped)),
        )


def store_on_write(alias: str, explanation: Explanation, prediction_pk: uuid.UUID) -> None:
    """Store the reason codes of a revision just inserted (in the writer's transaction).

    Never raises: a failure is logged and rolled back to a savepoint, so the revision is
    stored either way.
    """
    try:
        policy = audit_settings.REASON_CODES
        if not policy.enabled:
            return
        with transaction.atomic(using=alias):  # a savepoint: a database error stays in it
            decision, model_name = (
                PredictionEvent.objects.using(alias)
                .filter(pk=prediction_pk)
                .values_list("decision_outcome", "model__model_name")
                .get()
            )
            derivation = derive_for(
                explanation, decision=decision, model_name=model_name, policy=policy
            )
            if derivation is None:
                return
            ReasonCodes.objects.using(alias).bulk_create([_row(explanation, derivation)])
        _log_unmapped(explanation, model_name, derivation)
    except Exception:
        logger.exception(
            "ml_audit: the reason codes of explanation %s (prediction %s) could not be stored; "
            "the explanation is stored without them (add them later with manage.py "
            "ml_audit_reason_codes --backfill)",
            explanation.pk,
            prediction_pk,
        )


@dataclass
class BackfillResult:
    """What :func:`backfill` did: revisions examined, reason code rows written (or that would
    be, with ``dry_run``), revisions whose model no set of the policy covers."""

    examined: int = 0
    written: int = 0
    not_covered: int = 0


def backfill(
    *, using: str | None = None, batch_size: int = 500, dry_run: bool = False
) -> BackfillResult:
    """Store the reason codes of every explanation revision that has none, under the policy
    configured now, in batches of ``batch_size`` revisions (one transaction each).

    Every revision counts, not only current ones: each keeps the reasons derived from it. A
    revision whose model no set covers is left alone (and examined again next time). Safe to
    run while explanations are written, and twice: a revision that got its row meanwhile is
    skipped by the unique constraint.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    alias = resolve_alias(using)
    policy = audit_settings.REASON_CODES
    result = BackfillResult()
    if not policy.enabled:
        return result
    after: Any = None
    while True:
        queryset = (
            Explanation.objects.using(alias)
            .filter(reason_codes__isnull=True)
            .select_related("prediction__model")
            .only(
                "id",
                "prediction_id",
                "payload",
                "prediction__decision_outcome",
                "prediction__model__model_name",
            )
            .order_by("id")
        )
        if after is not None:
            queryset = queryset.filter(id__gt=after)
        batch = list(queryset[:batch_size])
        if not batch:
            return result
        after = batch[-1].pk
        rows = []
        for explanation in batch:
            result.examined += 1
            model_name = explanation.prediction.model.model_name
            derivation = derive_for(
                explanation,
                decision=explanation.prediction.decision_outcome,
                model_name=model_name,
                policy=policy,
            )
            if derivation is None:
                result.not_covered += 1
                continue
            _log_unmapped(explanation, model_name, derivation)
            rows.append(_row(explanation, derivation))
        if dry_run or not rows:
            result.written += len(rows)
            continue
        with transaction.atomic(using=alias):
            ReasonCodes.objects.using(alias).bulk_create(rows, ignore_conflicts=True)
        # A row whose revision got reason codes meanwhile was not inserted: count by id.
        result.written += (
            ReasonCodes.objects.using(alias).filter(id__in=[row.pk for row in rows]).count()
        )
