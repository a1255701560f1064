"""The seals of the audit trail (:mod:`ml_audit.sealing`): ``Seal`` and ``SealMember``.

Imported at the end of :mod:`ml_audit.models`. Both are append-only like the rows they seal
(ORM guard here, database triggers in migration ``0008_seals``): a seal is never amended, a row
is sealed once. See ``docs/tamper-evidence.md``.
"""

from __future__ import annotations

from django.db import models

from ml_audit.models import AppendOnlyModel, AppendOnlyQuerySet

__all__ = ["Seal", "SealMember"]


class Seal(AppendOnlyModel):
    """One link of the seal chain: a Merkle root over the rows it covers, the previous seal's
    head hash, and an HMAC of its head under a key the database does not hold.

    ``id`` is the seal's number, 1, 2, 3, ... in the order the seals were cut (one chain per
    audit database). The head (:func:`ml_audit.sealing.heads.head_of`) is every column but
    ``mac``; ``mac`` authenticates it.
    """

    id = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    # Head hash of the seal before (64 zeros for seal 1).
    previous_hash = models.CharField(max_length=64)
    # RFC 6962 Merkle tree hash over the members' leaves, in member id order.
    root = models.CharField(max_length=64)
    # Members: SealMember ids members_from..members_to (contiguous), leaves in all.
    leaves = models.PositiveBigIntegerField()
    members_from = models.BigIntegerField()
    members_to = models.BigIntegerField()
    # Members per sealed table, e.g. {"prediction": 980, "explanation": 12, "access": 8}; purge
    # records ("purge") and legal holds ("hold") are named only when the seal holds some.
    counts = models.JSONField(default=dict)
    # Every row whose id (UUIDv7) dates before the horizon and that had committed when the seal
    # was cut is in this seal or an earlier one.
    horizon = models.DateTimeField()
    # The creation times (from the UUIDv7 ids) of the oldest and newest member.
    covered_from = models.DateTimeField(null=True, blank=True)
    covered_to = models.DateTimeField(null=True, blank=True)
    algorithm = models.CharField(max_length=32)
    key_id = models.CharField(max_length=64)
    mac = models.CharField(max_length=128)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("id",)
        get_latest_by = "id"

    def __str__(self) -> str:
        return f"seal {self.id} ({self.leaves} rows)"


class SealMember(AppendOnlyModel):
    """One sealed row: which table (``kind``: 1 prediction, 2 explanation revision, 3 access
    log, 4 purge record, 5 legal hold; :mod:`ml_audit.sealing.tables`), which row, and the row
    hash that was sealed.

    A row is sealed at most once (unique ``kind, row_id``). ``id`` is assigned by the sealer:
    a seal's members are consecutive and in leaf order.
    """

    id = models.BigIntegerField(primary_key=True)
    seal = models.ForeignKey(Seal, on_delete=models.PROTECT, related_name="members", db_index=False)
    # ml_audit.sealing.tables: 1 prediction, 2 explanation revision, 3 access-log row,
    # 4 purge record, 5 legal hold (placement or release).
    kind = models.PositiveSmallIntegerField()
    row_id = models.UUIDField()
    # The row's hash when sealed (its content_hash, or the canonical hash of an access-log row,
    # purge record or hold).
    row_hash = models.CharField(max_length=64)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=("kind", "row_id"), name="ml_audit_sealmember_row"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.row_id} in seal {self.seal_id}"
