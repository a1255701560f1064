"""Data subjects (:mod:`ml_audit.subjects`): ``SubjectKey`` and ``SubjectErasure``.

Imported at the end of :mod:`ml_audit.models`. A prediction names its subject (the applicant,
the patient) only by a pseudonymous reference, ``PredictionEvent.subject_ref``: a keyed hash of
the subject's identifier under a secret of that subject alone, kept in ``SubjectKey``. Deleting
that one row (``ml_audit_forget``) is crypto-shredding: the predictions, their hashes and seals
stay as they are, and nobody can link them back to the person any more. ``SubjectErasure``
records that it happened, append-only and without the identifier. See ``docs/subjects.md``.
"""

from __future__ import annotations

from django.db import models

from ml_audit import records
from ml_audit.models import AppendOnlyModel, AppendOnlyQuerySet

__all__ = ["SubjectErasure", "SubjectKey"]


class SubjectKey(models.Model):
    """The secret of one data subject (in one tenant).

    ``lookup`` finds the row from the identifier without storing it: a keyed hash of tenant and
    identifier under the deployment's subject key (a setting, never in the database). ``secret``
    is random; the subject's reference is a keyed hash of the identifier under it. The row is
    deleted, never changed, when the subject is forgotten.
    """

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    lookup = models.CharField(max_length=64, unique=True)
    secret = models.CharField(max_length=64)
    tenant_id = models.CharField(max_length=records.MAX_TENANT_ID, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return f"subject key {self.id}"


class SubjectErasure(AppendOnlyModel):
    """A subject was forgotten: its key was deleted. Holds the pseudonymous reference (which no
    longer links to anyone), never the identifier."""

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    subject_ref = models.CharField(max_length=64)
    tenant_id = models.CharField(max_length=records.MAX_TENANT_ID, blank=True, default="")
    # How many stored predictions named the subject when it was forgotten.
    predictions = models.PositiveBigIntegerField(default=0)
    erased_at = models.DateTimeField()
    erased_by = models.CharField(max_length=255)
    reference = models.CharField(
        max_length=255, blank=True, default="", help_text="Request, case or ticket number."
    )
    reason = models.TextField(blank=True, default="")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("-erased_at", "-id")
        get_latest_by = "erased_at"
        indexes = [models.Index(fields=("subject_ref",), name="ml_audit_erasure_ref")]

    def __str__(self) -> str:
        return f"subject {self.subject_ref[:12]}… forgotten {self.erased_at:%Y-%m-%d}"
