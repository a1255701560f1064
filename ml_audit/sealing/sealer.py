"""Cutting seals: :func:`seal_pending` seals committed rows that no seal holds yet.

How rows are assigned (docs/tamper-evidence.md): under a lock that two sealers cannot both hold
(PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``), the sealer reads
the rows that have no ``SealMember`` row, keeps those created (UUIDv7 id) more than
``SEAL_LAG_SECONDS`` before the cut, and appends one ``Seal`` and one ``SealMember`` per row in
the same transaction. A row is assigned by *being listed*, not by where its id or timestamp
falls, so a row that commits after a seal was cut (a slow batch, a spool replayed hours later)
is simply not in that seal's list and goes into the next one: no seal ever "contains" a row it
did not see. The unique ``(kind, row_id)`` constraint makes a second sealing of a row
impossible.

The seal's ``horizon`` states what the sealer vouches for: every row created before it that had
committed at the cut is sealed. It is ``cut - SEAL_LAG_SECONDS`` when the seal took every
eligible row, and the previous seal's when ``max_rows`` cut the batch short (the rest follows in
the next seal). ``ml_audit_verify`` reports an unsealed row created before the newest horizon.

Never called on the request thread: by ``ml_audit_seal`` and by the span processor's writer
(:func:`seal_if_due`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, transaction

from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.seal_models import Seal, SealMember
from ml_audit.sealing.heads import ALGORITHM, GENESIS, current_key, head_hash, head_of, mac_of
from ml_audit.sealing.merkle import MerkleBuilder, leaf_data
from ml_audit.sealing.tables import (
    SEALED_TABLES,
    TABLES,
    SealedTable,
    created_at_of,
    uuid_text,
    when,
)

__all__ = ["seal_all", "seal_if_due", "seal_pending"]

logger = logging.getLogger("ml_audit.sealing")

#: Key of the PostgreSQL advisory lock that serialises sealers (one-key form, bigint).
SEAL_LOCK_KEY = zlib.crc32(b"ml_audit.seal") & 0x7FFFFFFF
#: Horizon of a first seal that was cut short by max_rows: it vouches for nothing yet.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INSERT_BATCH = 2000


def seal_pending(
    using: str | None = None, *, max_rows: int | None = None, now: dt.datetime | None = None
) -> Seal | None:
    """Seal up to ``max_rows`` (default ``SEAL_MAX_ROWS``) unsealed rows created more than
    ``SEAL_LAG_SECONDS`` ago, oldest first, as one new seal; ``None`` when there are none.

    Needs ``ML_AUDIT['SEAL_KEY']`` (raises ``ConfigurationError`` without it). Safe to run from
    several processes at once: sealers wait for each other.
    """
    alias = resolve_alias(using)
    key_id, key = current_key()
    limit = max_rows or audit_settings.SEAL_MAX_ROWS
    lag = dt.timedelta(seconds=audit_settings.SEAL_LAG_SECONDS)
    with _sealing_transaction(alias):
        _lock(alias)
        cut = now or dt.datetime.now(dt.UTC)
        bound = cut - lag
        last = Seal.objects.using(alias).order_by("-id").first()
        candidates: list[tuple[dt.datetime, int, str, str]] = []
        truncated = False
        for table in SEALED_TABLES:
            rows = _unsealed(alias, table, limit + 1)
            truncated |= len(rows) > limit
            for row_id, created, row_hash in rows:
                if created < bound:
                    candidates.append((created, table.kind, row_id, row_hash))
        if not candidates:
            return None
        candidates.sort()
        if len(candidates) > limit:
            del candidates[limit:]
            truncated = True
        if truncated:
            horizon = last.horizon if last is not None else EPOCH
        else:
            horizon = max(bound, last.horizon) if last is not None else bound
        return _append_seal(alias, last, candidates, cut, horizon, key_id, key)


def seal_all(using: str | None = None, *, max_rows: int | None = None) -> list[Seal]:
    """Seal everything eligible, in as many seals of at most ``max_rows`` rows as it takes."""
    limit = max_rows or audit_settings.SEAL_MAX_ROWS
    seals: list[Seal] = []
    while True:
        seal = seal_pending(using, max_rows=limit)
        if seal is None:
            return seals
        seals.append(seal)
        if seal.leaves < limit:
            return seals


_due_lock = threading.Lock()
_last_run: dict[str, float] = {}


def seal_if_due(using: str | None = None, *, max_rows: int | None = None) -> Seal | None:
    """The writer's periodic step: when ``ML_AUDIT['SEALING']`` is on and
    ``SEAL_INTERVAL_SECONDS`` have passed since this process last sealed this alias, seal one
    batch (:func:`seal_pending`). Never raises: a failure is logged and retried next interval.
    Costs one clock read and a dict lookup when nothing is due."""
    if not audit_settings.SEALING:
        return None
    alias = resolve_alias(using)
    now = time.monotonic()
    with _due_lock:
        if now - _last_run.get(alias, -1e18) < audit_settings.SEAL_INTERVAL_SECONDS:
            return None
        _last_run[alias] = now
    try:
        seal = seal_pending(alias, max_rows=max_rows)
    except Exception:
        logger.exception("ml_audit: sealing the audit rows of %r failed; retrying later", alias)
        return None
    if seal is not None:
        logger.info("ml_audit: seal %s covers %s rows", seal.id, seal.leaves)
    return seal


# ------------------------------------------------------------------------------ internals


@contextmanager
def _sealing_transaction(alias: str) -> Iterator[None]:
    """``transaction.atomic``; on SQLite begun ``IMMEDIATE`` (the write lock first)."""
    connection = connections[alias]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic(using=alias):
            yield
        return
    connection.ensure_connection()
    mode = getattr(connection, "transaction_mode", None)
    connection.transaction_mode = "IMMEDIATE"  # type: ignore[attr-defined]
    try:
        with transaction.atomic(using=alias):
            connection.transaction_mode = mode  # type: ignore[attr-defined]
            yield
    finally:
        connection.transaction_mode = mode  # type: ignore[attr-defined]


def _lock(alias: str) -> None:
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
    elif connection.vendor != "sqlite":  # elsewhere: lock the newest seal row, if any
        list(Seal.objects.using(alias).select_for_update().order_by("-id")[:1])


def _unsealed(alias: str, table: SealedTable, limit: int) -> list[tuple[str, dt.datetime, str]]:
    """``(row id, created at, row hash)`` of up to ``limit`` committed rows of ``table`` that no
    seal holds, lowest ids (for UUIDv7: oldest) first."""
    a = table.alias
    unsealed = (
        f"WHERE NOT EXISTS (SELECT 1 FROM ml_audit_sealmember m "
        f"WHERE m.kind = {table.kind} AND m.row_id = {a}.id) ORDER BY {a}.id LIMIT {limit}"
    )
    if table.stores_hash:
        sql = f"SELECT {a}.id, {table.recorded}, {a}.content_hash FROM {table.table} {a} {unsealed}"
    else:
        sql = table.select(connections[alias].vendor, f", {table.recorded}") + f" {unsealed}"
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        fetched = cursor.fetchall()
    rows = []
    for fetched_row in fetched:
        if table.stores_hash:
            row_id, recorded, row_hash = fetched_row
        else:
            row_id, recorded = fetched_row[0], fetched_row[-1]
            row_hash = table.rehash(fetched_row[:-1])[0]
        text = uuid_text(row_id)
        rows.append((text, created_at_of(text, when(recorded)), row_hash))
    return rows


def _append_seal(
    alias: str,
    last: Seal | None,
    candidates: list[tuple[dt.datetime, int, str, str]],
    cut: dt.datetime,
    horizon: dt.datetime,
    key_id: str,
    key: bytes,
) -> Seal:
    first_member = last.members_to + 1 if last is not None else 1
    members = sorted((kind, row_id, row_hash) for _, kind, row_id, row_hash in candidates)
    builder = MerkleBuilder()
    for kind, row_id, row_hash in members:
        builder.add(leaf_data(kind, row_id, row_hash))
    # The audit tables always have a count; the record tables (retention records, reviews,
    # outcomes, reason codes, subject erasures) only when the seal holds some (the heads of
    # seals cut before they were sealed keep their counts).
    counts = {table.name: 0 for table in TABLES}
    names = {table.kind: table.name for table in SEALED_TABLES}
    for kind, _, _ in members:
        counts[names[kind]] = counts.get(names[kind], 0) + 1
    seal = Seal(
        id=last.id + 1 if last is not None else 1,
        created_at=cut,
        previous_hash=head_hash(head_of(last)) if last is not None else GENESIS,
        root=builder.root(),
        leaves=len(members),
        members_from=first_member,
        members_to=first_member + len(members) - 1,
        counts=counts,
        horizon=horizon,
        covered_from=candidates[0][0],
        covered_to=max(created for created, _, _, _ in candidates),
        algorithm=ALGORITHM,
        key_id=key_id,
        mac="",
    )
    seal.mac = mac_of(head_of(seal), key)
    seal.save(using=alias)
    _insert_members(alias, seal.id, first_member, members)
    return seal


def _insert_members(
    alias: str, seal_id: int, first: int, members: list[tuple[int, str, str]]
) -> None:
    connection = connections[alias]
    rows: Any = (
        (first + i, seal_id, kind, row_id, row_hash)
        for i, (kind, row_id, row_hash) in enumerate(members)
    )
    if connection.vendor == "postgresql" and hasattr(connection.connection, "pgconn"):
        with connection.cursor() as cursor:
            copy_sql = "COPY ml_audit_sealmember (id, seal_id, kind, row_id, row_hash) FROM STDIN"
            with cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        return
    batch: list[SealMember] = []
    for member_id, _, kind, row_id, row_hash in rows:
        batch.append(
            SealMember(id=member_id, seal_id=seal_id, kind=kind, row_id=row_id, row_hash=row_hash)
        )
        if len(batch) == _INSERT_BATCH:
            SealMember.objects.using(alias).bulk_create(batch)
            batch = []
    if batch:
        SealMember.objects.using(alias).bulk_create(batch)
