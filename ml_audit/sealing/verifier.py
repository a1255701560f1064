"""Verifying the trail: :func:`verify` recomputes row hashes, seal roots, the chain and the
HMACs in one read-only snapshot, streaming every table (server-side cursors on PostgreSQL).

Passes, each a single streamed query:

1. seals in id order: chain (numbers, order, member ranges, previous hashes) and HMACs;
2. members in id order: each seal's RFC 6962 root and leaf count from its member list;
3. per sealed table, rows LEFT JOIN their member: the row hash recomputed in Python from the
   columns (:mod:`ml_audit.sealing.tables`), compared with the stored ``content_hash`` and
   with the hash that was sealed; unsealed rows older than the newest horizon;
4. per sealed table, members whose row is gone (an anti-join).

The recomputation is deliberately independent of the database: no hash is computed in SQL.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, transaction

from ml_audit.conf import resolve_alias
from ml_audit.seal_models import Seal
from ml_audit.sealing.findings import Report
from ml_audit.sealing.heads import ALGORITHM, GENESIS, head_hash, head_of, key_for, mac_of
from ml_audit.sealing.merkle import MerkleBuilder, leaf_data
from ml_audit.sealing.tables import TABLES, SealedTable, created_at_of, uuid_text, when

__all__ = ["verify"]

CHUNK = 10_000
Progress = Callable[[int], None]


def verify(
    using: str | None = None,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    against: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> Report:
    """Check the audit trail of ``using`` and report every class of tampering found.

    ``since``/``until`` limit the row checks to rows recording a time in ``[since, until)`` and
    the root checks to seals covering that window; the chain and every head are always
    checked. ``against`` is a document written by ``ml_audit_seal --export``.
    """
    alias = resolve_alias(using)
    report = Report()
    started = time.perf_counter()
    with _snapshot(alias):
        state = _check_chain(alias, report, against)
        _check_roots(alias, report, state, since, until, progress)
        for table in TABLES:
            _check_rows(alias, report, state, table, since, until, progress)
            _check_deleted(alias, report, state, table, since, until)
    report.seconds = time.perf_counter() - started
    return report


class _State:
    """What the chain pass learnt about the seals, for the later passes."""

    def __init__(self) -> None:
        # seal id -> (root, leaves, members_from, members_to, covered_from, covered_to)
        self.seals: dict[int, tuple[str, int, int, int, Any, Any]] = {}
        # seal id -> horizon of the seal before it (rows created before it arrived late)
        self.previous_horizon: dict[int, dt.datetime] = {}
        self.horizon: dt.datetime | None = None

    def overlaps(self, seal_id: int, since: Any, until: Any) -> bool:
        covered_from, covered_to = self.seals[seal_id][4:6]
        if covered_from is None:
            return True
        return not (
            (since is not None and covered_to < since)
            or (until is not None and covered_from >= until)
        )


@contextmanager
def _snapshot(alias: str) -> Iterator[None]:
    """One consistent, read-only view of the database for every pass."""
    connection = connections[alias]
    outer = connection.in_atomic_block
    with transaction.atomic(using=alias):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                if not outer:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cursor.execute("SET LOCAL work_mem = '64MB'")
        yield


def _stream(alias: str, sql: str, params: list[Any] | None = None) -> Iterator[list[Any]]:
    """The rows of ``sql`` in chunks, from a server-side cursor where the backend has one."""
    with connections[alias].chunked_cursor() as cursor:
        cursor.execute(sql, params or [])
        while chunk := cursor.fetchmany(CHUNK):
            yield chunk


# ------------------------------------------------------------------------------ 1. the chain


def _check_chain(alias: str, report: Report, against: dict[str, Any] | None) -> _State:
    state = _State()
    previous: Seal | None = None
    previous_hash = GENESIS
    previous_forged = False
    seen_hashes: dict[str, int] = {}
    count = 0
    for seal in Seal.objects.using(alias).order_by("id").iterator(chunk_size=2000):
        count += 1
        head = head_of(seal)
        this_hash = head_hash(head)
        ref = {"seal": seal.id}
        key = key_for(seal.key_id)
        forged = False
        if key is None:
            report.add("unknown_key", ref, f"key id {seal.key_id!r} is not configured")
        elif seal.algorithm != ALGORITHM or not hmac.compare_digest(mac_of(head, key), seal.mac):
            forged = True
            report.add("forged_seal_head", ref, "the head's HMAC does not verify")
        expected_id = previous.id + 1 if previous is not None else 1
        if seal.id != expected_id:
            report.add("removed_seal", ref, f"seal {expected_id} expected before seal {seal.id}")
        elif previous is not None and (
            seal.created_at < previous.created_at or seal.members_from <= previous.members_to
        ):
            report.add("reordered_seal", ref, f"seal {seal.id} was cut before seal {previous.id}")
        elif seal.members_from != (previous.members_to + 1 if previous is not None else 1):
            report.add("removed_seal", ref, "the members of an earlier seal are missing")
        elif seal.previous_hash != previous_hash and not previous_forged:
            if seal.previous_hash in seen_hashes:
                report.add("removed_seal", ref, "its previous hash skips a seal")
            else:
                report.add("broken_chain", ref, "its previous hash is no earlier seal's head hash")
        seen_hashes[this_hash] = seal.id
        state.seals[seal.id] = (
            seal.root,
            seal.leaves,
            seal.members_from,
            seal.members_to,
            seal.covered_from,
            seal.covered_to,
        )
        if previous is not None:
            state.previous_horizon[seal.id] = previous.horizon
        if state.horizon is None or seal.horizon > state.horizon:
            state.horizon = seal.horizon
        previous, previous_hash, previous_forged = seal, this_hash, forged
        report.latest_seal = {**head, "head_hash": this_hash}
    report.checked["seals"] = count
    if against is not None:
        _check_export(alias, report, against)
    return state


def _check_export(alias: str, report: Report, document: dict[str, Any]) -> None:
    exported = document["head"]
    seal_id = exported["seal"]
    ref = {"seal": seal_id}
    seal = Seal.objects.using(alias).filter(id=seal_id).first()
    if seal is None:
        report.add("removed_seal", ref, f"exported seal {seal_id} is no longer in the chain")
        report.add("export_mismatch", ref, f"exported seal {seal_id} is gone")
        return
    head = head_of(seal)
    if (
        head != exported
        or head_hash(head) != document.get("head_hash")
        or seal.mac != document.get("mac")
    ):
        changed = sorted(
            name for name in set(head) | set(exported) if head.get(name) != exported.get(name)
        )
        report.add(
            "export_mismatch",
            ref,
            f"seal {seal_id} differs from the exported head ({', '.join(changed) or 'mac'})",
        )


# ------------------------------------------------------------------------------ 2. seal roots


def _check_roots(
    alias: str, report: Report, state: _State, since: Any, until: Any, progress: Progress | None
) -> None:
    wanted = [s for s in state.seals if state.overlaps(s, since, until)]
    if not wanted:
        return
    sql = "SELECT seal_id, id, kind, row_id, row_hash FROM ml_audit_sealmember"
    params: list[Any] = []
    if since is not None or until is not None:
        sql += " WHERE seal_id >= %s AND seal_id <= %s"
        params = [min(wanted), max(wanted)]
    sql += " ORDER BY id"
    current: int | None = None
    builder = MerkleBuilder()
    first_member = last_member = 0
    done: set[int] = set()
    members = 0

    def finish() -> None:
        if current is None:
            return
        done.add(current)
        expected = state.seals.get(current)
        ref = {"seal": current}
        if expected is None:
            report.add("seal_mismatch", ref, f"members list seal {current}, which does not exist")
        elif (builder.root(), builder.count, first_member, last_member) != expected[:4]:
            report.add(
                "seal_mismatch",
                ref,
                f"its {builder.count} listed rows hash to another root than the "
                f"{expected[1]} rows it sealed",
            )

    for chunk in _stream(alias, sql, params):
        members += len(chunk)
        for seal_id, member_id, kind, row_id, row_hash in chunk:
            if seal_id != current:
                finish()
                current, builder, first_member = seal_id, MerkleBuilder(), member_id
            last_member = member_id
            builder.add(leaf_data(kind, uuid_text(row_id), row_hash))
        if progress is not None:
            progress(len(chunk))
    finish()
    for seal_id in wanted:
        if seal_id not in done and state.seals[seal_id][1] > 0:
            report.add("seal_mismatch", {"seal": seal_id}, "its member list is gone")
    report.checked["seal members"] = members


# ------------------------------------------------------------------------------ 3. rows


def _window(table: SealedTable, since: Any, until: Any) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if since is not None:
        clauses.append(f"{table.recorded} >= %s")
        params.append(since)
    if until is not None:
        clauses.append(f"{table.recorded} < %s")
        params.append(until)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _check_rows(
    alias: str,
    report: Report,
    state: _State,
    table: SealedTable,
    since: Any,
    until: Any,
    progress: Progress | None,
) -> None:
    where, params = _window(table, since, until)
    sql = (
        table.select(connections[alias].vendor, ", m.seal_id, m.row_hash")
        + f" LEFT JOIN ml_audit_sealmember m ON m.kind = {table.kind}"
        + f" AND m.row_id = {table.alias}.id"
        + where
    )
    horizon = state.horizon
    previous_horizon = state.previous_horizon
    rehash = table.rehash
    name = table.name
    recorded_index = table.recorded_index
    stores_hash = table.stores_hash
    rows = pending = 0
    for chunk in _stream(alias, sql, params):
        rows += len(chunk)
        for row in chunk:
            seal_id, sealed_hash = row[-2], row[-1]
            recomputed, problem = rehash(row[:-2])
            stored = row[-3] if stores_hash else recomputed
            if recomputed != stored or problem is not None:
                report.add(
                    "changed_row",
                    _row_ref(name, row[0], seal_id),
                    problem or "its content does not match its content_hash",
                )
            elif sealed_hash is not None and stored != sealed_hash:
                report.add(
                    "rehashed_row" if stores_hash else "changed_row",
                    _row_ref(name, row[0], seal_id),
                    "its hash is not the one sealed for it"
                    + (" (content and content_hash were rewritten)" if stores_hash else ""),
                )
            if seal_id is None:
                row_id = uuid_text(row[0])
                recorded = when(row[recorded_index])
                created = created_at_of(row_id, recorded)
                if horizon is not None and created < horizon:
                    report.add(
                        "backdated_row" if recorded < horizon else "inserted_row",
                        {"table": name, "id": row_id},
                        f"in no seal, though created {created.isoformat()} before the newest "
                        f"horizon {horizon.isoformat()}",
                    )
                else:
                    pending += 1
            elif seal_id in previous_horizon:
                row_id = uuid_text(row[0])
                created = created_at_of(row_id, when(row[recorded_index]))
                if created < previous_horizon[seal_id]:
                    report.add(
                        "late_row",
                        _row_ref(name, row[0], seal_id),
                        "sealed later than the seal before its seal vouched for (a replay "
                        "after an outage, or a row inserted before it was sealed)",
                        notice=True,
                    )
        if progress is not None:
            progress(len(chunk))
    report.checked[table.name] = report.checked.get(table.name, 0) + rows
    if pending:
        report.checked[f"{table.name} not sealed yet"] = pending


def _row_ref(name: str, row_id: Any, seal_id: int | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"table": name, "id": uuid_text(row_id)}
    if seal_id is not None:
        ref["seal"] = seal_id
    return ref


# ------------------------------------------------------------------------------ 4. deletions


def _check_deleted(
    alias: str, report: Report, state: _State, table: SealedTable, since: Any, until: Any
) -> None:
    a = table.alias
    sql = (
        f"SELECT m.row_id, m.seal_id FROM ml_audit_sealmember m WHERE m.kind = {table.kind} "
        f"AND NOT EXISTS (SELECT 1 FROM {table.table} {a} WHERE {a}.id = m.row_id)"
    )
    for chunk in _stream(alias, sql):
        for row_id, seal_id in chunk:
            if seal_id in state.seals and not state.overlaps(seal_id, since, until):
                continue
            report.add(
                "deleted_row",
                {"table": table.name, "id": uuid_text(row_id), "seal": seal_id},
                "sealed, and no longer in the table",
            )
