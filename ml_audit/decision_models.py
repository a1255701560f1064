"""What happens to a decision after the model answers: ``Review`` (a human confirms, overrides,
escalates; a subject contests), ``Outcome`` (the observed ground truth) and ``ReasonCodes``
(the principal reasons, in words, derived from an explanation revision).

Imported at the end of :mod:`ml_audit.models`. All three are append-only (ORM guard here,
database triggers in migration ``0010_subjects_reviews_outcomes``): a later review or outcome
supersedes an earlier one without erasing it. They go with their prediction when a retention
purge removes it. See ``docs/oversight.md``.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from ml_audit import records
from ml_audit.models import AppendOnlyModel, AppendOnlyQuerySet

__all__ = ["Outcome", "ReasonCodes", "Review", "ReviewAction"]


class ReviewAction(models.TextChoices):
    CONFIRM = "confirm"
    OVERRIDE = "override"
    ESCALATE = "escalate"
    CONTEST_RECEIVED = "contest_received"
    CONTEST_RESOLVED = "contest_resolved"


class Review(AppendOnlyModel):
    """One act of human oversight on one prediction.

    An ``override`` carries the ``final_outcome`` that replaces the model's decision; the
    prediction's effective outcome is the latest override's, else the model's. ``reason`` and
    ``comment`` are stored as redacted by the value detectors (``redaction`` says which were
    changed).
    """

    Action = ReviewAction

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    prediction = models.ForeignKey(
        "ml_audit.PredictionEvent",
        on_delete=models.PROTECT,
        related_name="reviews",
        db_index=False,
    )
    # Copied from the prediction: tenant scoping without a join.
    tenant_id = models.CharField(max_length=records.MAX_TENANT_ID, blank=True, default="")
    action = models.CharField(max_length=32, choices=ReviewAction.choices)
    final_outcome = models.CharField(
        max_length=records.MAX_DECISION_OUTCOME, blank=True, default=""
    )
    # Who reviewed: a Django user ("user", its username) or an actor (its type and id).
    reviewer_type = models.CharField(max_length=32)
    reviewer_id = models.CharField(max_length=records.MAX_ACTOR_ID)
    reason = models.CharField(max_length=255, blank=True, default="")
    comment = models.TextField(blank=True, default="")
    redaction = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    # The review's own span (in the trace of whatever recorded it, linked to the prediction's
    # span: ml_audit.oversight.spans).
    trace_id = models.CharField(max_length=32, blank=True, default="")
    span_id = models.CharField(max_length=16, blank=True, default="")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        get_latest_by = "created_at"
        indexes = [
            models.Index(fields=("prediction", "created_at"), name="ml_audit_review_pred"),
            # "Predictions with an override / with this review action".
            models.Index(fields=("action", "prediction"), name="ml_audit_review_action"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(action=ReviewAction.OVERRIDE) | ~Q(final_outcome=""),
                name="ml_audit_review_override_outcome",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} of {self.prediction_id} by {self.reviewer_type}:{self.reviewer_id}"


class Outcome(AppendOnlyModel):
    """The observed outcome of one prediction (the loan defaulted or not), from ``source``.

    ``idempotency_key`` (a hash of prediction, value, time observed and source) makes
    recording the same observation again add nothing.
    """

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    prediction = models.ForeignKey(
        "ml_audit.PredictionEvent",
        on_delete=models.PROTECT,
        related_name="outcomes",
        db_index=False,
    )
    tenant_id = models.CharField(max_length=records.MAX_TENANT_ID, blank=True, default="")
    value = models.JSONField()
    observed_at = models.DateTimeField()
    source = models.CharField(max_length=255, blank=True, default="")
    recorded_at = models.DateTimeField()
    recorded_by = models.CharField(max_length=255, blank=True, default="")
    idempotency_key = models.CharField(max_length=64, unique=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("-observed_at", "-recorded_at", "-id")
        get_latest_by = "observed_at"
        indexes = [
            models.Index(fields=("prediction", "observed_at"), name="ml_audit_outcome_pred"),
        ]

    def __str__(self) -> str:
        return f"outcome of {self.prediction_id} observed {self.observed_at:%Y-%m-%d}"


class ReasonCodes(AppendOnlyModel):
    """The reason codes of one explanation revision: the top contributions against the
    decision, mapped to words by ``ML_AUDIT["REASON_CODES"]``.

    ``codes`` is a list of ``{"code", "text", "feature", "direction", "contribution"}`` in
    order of weight.
    """

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    explanation = models.OneToOneField(
        "ml_audit.Explanation", on_delete=models.PROTECT, related_name="reason_codes"
    )
    prediction = models.ForeignKey(
        "ml_audit.PredictionEvent",
        on_delete=models.PROTECT,
        related_name="reason_code_sets",
    )
    codes = models.JSONField(default=list)
    created_at = models.DateTimeField()

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = "reason codes"
        verbose_name_plural = "reason codes"

    def __str__(self) -> str:
        return f"reason codes of {self.explanation_id}"
