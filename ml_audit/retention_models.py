"""Legal holds and purge records (:mod:`ml_audit.retention`): ``LegalHold``, ``PurgeRecord``,
``PurgedRow``.

Imported at the end of :mod:`ml_audit.models`. All three are append-only (ORM guard here,
database triggers in migration ``0009_retention``): a hold is released by a second row, never
edited; a purge leaves a record and one ``PurgedRow`` per removed row, never amended. See
``docs/retention.md``.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from ml_audit import records
from ml_audit.models import AppendOnlyModel, AppendOnlyQuerySet

__all__ = ["HoldAction", "LegalHold", "PurgeRecord", "PurgedRow"]


class HoldAction(models.TextChoices):
    PLACE = "place"
    RELEASE = "release"


class LegalHold(AppendOnlyModel):
    """One placement or one release of a legal hold.

    A ``place`` row scopes rows that no purge may remove while it is in force: every scope field
    that is set must match (an empty field matches anything; a hold with no scope at all holds
    everything). A ``release`` row names the placement it ends (``releases``) and carries only
    who, when and why. Who, when and why are on both.
    """

    Action = HoldAction

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    action = models.CharField(max_length=8, choices=HoldAction.choices)
    releases = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="released_by",
        help_text="For a release: the placement it ends.",
    )
    # Scope of a placement; every field that is set must match.
    tenant_id = models.CharField(max_length=records.MAX_TENANT_ID, blank=True, default="")
    actor_type = models.CharField(max_length=32, blank=True, default="")
    actor_id = models.CharField(max_length=records.MAX_ACTOR_ID, blank=True, default="")
    model_name = models.CharField(max_length=255, blank=True, default="")
    prediction_ids = models.JSONField(
        default=list, blank=True, help_text="External prediction ids (prediction_id)."
    )
    time_from = models.DateTimeField(null=True, blank=True)
    time_to = models.DateTimeField(null=True, blank=True)
    # Who, when, why.
    reference = models.CharField(
        max_length=255, blank=True, default="", help_text="Case, matter or ticket number."
    )
    reason = models.TextField()
    created_by = models.CharField(max_length=255)
    created_at = models.DateTimeField()

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        get_latest_by = "created_at"
        constraints = [
            models.CheckConstraint(
                condition=(Q(action=HoldAction.PLACE) & Q(releases__isnull=True))
                | (Q(action=HoldAction.RELEASE) & Q(releases__isnull=False)),
                name="ml_audit_hold_release_names_placement",
            ),
        ]

    def __str__(self) -> str:
        if self.action == HoldAction.RELEASE:
            return f"release of hold {self.releases_id}"
        return f"hold {self.reference or self.id}: {self.scope_text()}"

    def scope_text(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("tenant", self.tenant_id),
                ("actor", f"{self.actor_type}:{self.actor_id}" if self.actor_id else ""),
                ("model", self.model_name),
                ("predictions", len(self.prediction_ids) if self.prediction_ids else ""),
                ("from", self.time_from.isoformat() if self.time_from else ""),
                ("to", self.time_to.isoformat() if self.time_to else ""),
            )
            if value
        ]
        return ", ".join(parts) if parts else "everything"


class PurgeRecord(AppendOnlyModel):
    """One committed batch of a purge: what it removed, why, and who ran it.

    Written in the transaction that deletes the rows, with one :class:`PurgedRow` per removed
    row; ``root`` is the RFC 6962 Merkle root over those rows' leaves, computed as the seals
    compute theirs (:mod:`ml_audit.sealing.merkle`), in (kind, row id) order. A purge run
    (``run_id``) is one or more batches.
    """

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    run_id = models.UUIDField()
    batch = models.PositiveIntegerField()
    purged_at = models.DateTimeField()
    # "prediction" (with its explanations, ...) or "access".
    target = models.CharField(max_length=16)
    # The group the batch belongs to: the model and tenant of its predictions ("" for access).
    model_name = models.CharField(max_length=255, blank=True, default="")
    tenant_id = models.CharField(max_length=records.MAX_TENANT_ID, blank=True, default="")
    # Rows removed per table, e.g. {"prediction": 1000, "explanation": 97}.
    counts = models.JSONField(default=dict)
    leaves = models.PositiveIntegerField()
    root = models.CharField(max_length=64)
    # The times the removed rows record (prediction timestamp, access time): oldest, newest.
    time_from = models.DateTimeField()
    time_to = models.DateTimeField()
    # The rule that allowed it: {"rule": "MODELS['credit']", "days": 760, "cutoff": ...,
    # "policy": {...the whole RETENTION...}, "holds": [ids of the holds in force]}.
    policy = models.JSONField(default=dict)
    ran_by = models.CharField(max_length=255)
    database_role = models.CharField(max_length=255, blank=True, default="")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("-purged_at", "-id")
        get_latest_by = "purged_at"
        indexes = [models.Index(fields=("run_id", "batch"), name="ml_audit_purge_run")]

    def __str__(self) -> str:
        total = sum(self.counts.values()) if isinstance(self.counts, dict) else self.leaves
        return f"purge {self.run_id} batch {self.batch}: {total} rows"


class PurgedRow(AppendOnlyModel):
    """One removed row (a tombstone): its table (``kind``, as in ``SealMember``), id and hash.

    Lets ``ml_audit_verify`` tell a purged row from a deleted one, and anyone recompute the
    purge's Merkle root. Holds no content of the row.
    """

    id = models.BigAutoField(primary_key=True)
    purge = models.ForeignKey(
        PurgeRecord, on_delete=models.PROTECT, related_name="rows", db_index=False
    )
    kind = models.PositiveSmallIntegerField()
    row_id = models.UUIDField()
    row_hash = models.CharField(max_length=64)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=("kind", "row_id"), name="ml_audit_purgedrow_row"),
        ]
        indexes = [
            models.Index(fields=("purge", "kind", "row_id"), name="ml_audit_purgedrow_purge")
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.row_id} purged by {self.purge_id}"
