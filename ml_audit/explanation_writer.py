"""The writer of explanation revisions: the next revision of a prediction's explanation,
gapless under concurrency, hashed like a prediction row.

Its functions are importable from :mod:`ml_audit.store` too (``store.write_explanation``...),
which remains the one writer of prediction rows.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import JSONField, Value

from ml_audit.canonical import sha256_hex
from ml_audit.conf import resolve_alias
from ml_audit.exceptions import PredictionNotFound
from ml_audit.explanation_records import ExplanationRecord
from ml_audit.ids import uuid7
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.reasons.writer import store_on_write as store_reason_codes

__all__ = [
    "append_explanation",
    "append_explanation_of",
    "verify_explanation",
    "write_explanation",
]

#: Attempts of :func:`append_explanation` when a revision number was taken concurrently
#: (which the per-prediction lock should prevent; the retry is the safety net).
_EXPLANATION_ATTEMPTS = 8


def write_explanation(
    prediction: PredictionEvent, record: ExplanationRecord, *, using: str | None = None
) -> Explanation:
    """Append ``record`` as the next revision of ``prediction``'s explanation.

    If the current revision already has the same content, it is returned and nothing is
    written. Concurrent attachments to one prediction are serialised (see
    :func:`append_explanation`).
    """
    return append_explanation(prediction, record, using=using)[0]


def append_explanation_of(
    prediction_id: str, record: ExplanationRecord, *, using: str | None = None
) -> bool:
    """:func:`append_explanation` for the prediction stored under ``prediction_id`` (a spooled
    explanation, replayed); True when a revision was written. ``PredictionNotFound`` when that
    prediction is not stored (yet)."""
    alias = resolve_alias(using)
    prediction = PredictionEvent.objects.using(alias).filter(prediction_id=prediction_id).first()
    if prediction is None:
        raise PredictionNotFound(f"no prediction has the prediction_id {prediction_id!r} (yet)")
    return append_explanation(prediction, record, using=alias)[1]


def append_explanation(
    prediction: PredictionEvent, record: ExplanationRecord, *, using: str | None = None
) -> tuple[Explanation, bool]:
    """:func:`write_explanation`, also saying whether a revision was written (``True``) or the
    identical current one returned (``False``).

    Revisions of one prediction are numbered 1, 2, 3... without gaps. Concurrent calls for the
    same prediction are serialised before the current revision is read: on PostgreSQL by a
    transaction-level advisory lock keyed on the prediction (no row is locked or written, so
    the append-only triggers and table privileges are not involved), on SQLite by taking the
    database's write lock when the transaction begins (``BEGIN IMMEDIATE``), elsewhere by
    ``SELECT ... FOR UPDATE`` of the prediction row. Should a revision number still be taken
    concurrently (the unique (prediction, revision) constraint refuses the row), the attempt
    is retried, a bounded number of times; an ``IntegrityError`` that is not such a race
    (e.g. the prediction does not exist) is raised as it is.
    """
    alias = resolve_alias(using)
    prediction_pk = (
        prediction.pk if isinstance(prediction.pk, uuid.UUID) else uuid.UUID(str(prediction.pk))
    )
    race: IntegrityError | None = None
    for attempt in range(_EXPLANATION_ATTEMPTS):
        if attempt:  # only after a lost race: back off a little, with jitter
            time.sleep(random.uniform(0, 0.001 * 2**attempt))
        revision: int | None = None
        try:
            with _revision_transaction(alias):
                _lock_revisions(alias, prediction_pk)
                current = (
                    Explanation.objects.using(alias)
                    .filter(prediction_id=prediction_pk)
                    .order_by("-revision")
                    .first()
                )
                if current is not None and _explanation_identity(current) == record.identity():
                    return current, False
                revision = current.revision + 1 if current is not None else 1
                explanation = _insert_explanation(alias, prediction_pk, record, revision)
                # ML_AUDIT["REASON_CODES"]: with the revision, in its transaction; never raises.
                store_reason_codes(alias, explanation, prediction_pk)
                return explanation, True
        except IntegrityError as exc:
            if revision is None or not _revision_taken(alias, prediction_pk, revision):
                raise
            race = exc
    raise DatabaseError(
        f"could not append an explanation revision to prediction {prediction_pk} in "
        f"{_EXPLANATION_ATTEMPTS} attempts: each revision number was taken concurrently"
    ) from race


def _insert_explanation(
    alias: str, prediction_pk: uuid.UUID, record: ExplanationRecord, revision: int
) -> Explanation:
    explanation_id = uuid7()
    created_at = dt.datetime.now(dt.UTC)
    explanation = Explanation(
        id=explanation_id,
        prediction_id=prediction_pk,
        revision=revision,
        method=record.method,
        method_version=record.method_version,
        # A payload of None is JSON null: None alone would be SQL NULL, which the NOT NULL
        # column refuses (and which would not read back as the hashed payload).
        payload=_JSON_NULL if record.payload is None else record.payload,
        summary_text=record.summary_text,
        status=record.status,
        generated_at=record.generated_at,
        created_at=created_at,
        content_hash=sha256_hex(
            record.stored_fields(
                explanation_id=explanation_id,
                prediction_pk=prediction_pk,
                revision=revision,
                created_at=created_at,
            )
        ),
    )
    Explanation.objects.using(alias).bulk_create([explanation])
    explanation.payload = record.payload
    return explanation


_JSON_NULL = Value(None, JSONField())

#: The first key of PostgreSQL's two-key advisory locks taken by :func:`append_explanation`
#: (the second is the prediction's): a namespace of ml_audit's own. Two-key and one-key
#: advisory locks never conflict, and a collision of two predictions' keys only serialises
#: them.
_REVISION_LOCK_CLASS = zlib.crc32(b"ml_audit.explanation_revision") & 0x7FFFFFFF


def _revision_lock_key(prediction_pk: uuid.UUID) -> int:
    """The prediction's UUID folded to a signed 32-bit int (an advisory lock's second key)."""
    value = prediction_pk.int
    folded = (value ^ (value >> 32) ^ (value >> 64) ^ (value >> 96)) & 0xFFFFFFFF
    return folded - (1 << 32) if folded >= 1 << 31 else folded


@contextmanager
def _revision_transaction(alias: str) -> Iterator[None]:
    """``transaction.atomic``; on SQLite, outside any transaction, begun ``IMMEDIATE``.

    Django begins SQLite transactions ``DEFERRED`` unless ``OPTIONS["transaction_mode"]``
    says otherwise: the write lock would be taken only at the INSERT, after the current
    revision was read, and a concurrent writer would then fail with "database is locked"
    instead of waiting. ``BEGIN IMMEDIATE`` takes the lock first (waiting up to the busy
    timeout), so the read and the INSERT see no other writer.
    """
    connection = connections[alias]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic(using=alias):
            yield
        return
    connection.ensure_connection()  # connecting resets transaction_mode from the settings
    mode = getattr(connection, "transaction_mode", None)
    if mode not in (None, "DEFERRED"):
        with transaction.atomic(using=alias):
            yield
        return
    connection.transaction_mode = "IMMEDIATE"  # type: ignore[attr-defined]
    try:
        with transaction.atomic(using=alias):
            connection.transaction_mode = mode  # type: ignore[attr-defined]
            yield
    finally:
        connection.transaction_mode = mode  # type: ignore[attr-defined]


def _lock_revisions(alias: str, prediction_pk: uuid.UUID) -> None:
    """Serialise appends to this prediction's explanation until the transaction ends."""
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                # int4 keys: the two-key form (a bigint parameter would pick the one-key form)
                "SELECT pg_advisory_xact_lock(%s::integer, %s::integer)",
                [_REVISION_LOCK_CLASS, _revision_lock_key(prediction_pk)],
            )
    elif connection.vendor != "sqlite":  # SQLite: the write lock of BEGIN IMMEDIATE
        list(
            PredictionEvent.objects.using(alias)
            .select_for_update()
            .filter(pk=prediction_pk)
            .values_list("pk", flat=True)
        )


def _revision_taken(alias: str, prediction_pk: uuid.UUID, revision: int) -> bool:
    """Whether an IntegrityError on inserting ``revision`` was a race for that number."""
    return (
        Explanation.objects.using(alias)
        .filter(prediction_id=prediction_pk, revision=revision)
        .exists()
    )


def _explanation_identity(row: Explanation) -> dict[str, Any]:
    return {
        "method": row.method,
        "method_version": row.method_version,
        "payload": row.payload,
        "summary_text": row.summary_text,
        "status": row.status,
    }


def verify_explanation(row: Explanation) -> bool:
    """Whether an explanation row's stored ``content_hash`` still matches its content."""
    record = ExplanationRecord(generated_at=row.generated_at, **_explanation_identity(row))
    expected = sha256_hex(
        record.stored_fields(
            explanation_id=row.pk,
            prediction_pk=row.prediction_id,
            revision=row.revision,
            created_at=row.created_at,
        )
    )
    return expected == row.content_hash
