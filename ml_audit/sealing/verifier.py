"""Verifying the trail: :func:`verify` recomputes row hashes, seal roots, the chain and the
HMACs in one read-only snapshot, streaming every table (server-side cursors on PostgreSQL).

Passes, each a single streamed query:

1. seals in id order: chain (numbers, order, member ranges, previous hashes) and HMACs;
2. members in id order: each seal's RFC 6962 root and leaf count from its member list;
3. per sealed table, rows LEFT JOIN their member: the row hash recomputed in Python from the
   columns (:mod:`ml_audit.sealing.tables`), compared with the stored ``content_hash`` and
   with the hash that was sealed; unsealed rows older than the newest horizon;
4. per sealed table, members whose row is gone (an anti-join);
5. the record tables (purge records, legal holds, reviews, outcomes, reason codes, subject
   erasures) through a cursor, and the purges' tombstones:
   :func:`ml_audit.sealing.purges.check_purges`.

Passes 3 and 4 cover :data:`~ml_audit.sealing.tables.TABLES` (predictions, explanations, the
access log); pass 5 judges each record with the same finding classes.

The recomputation is deliberately independent of the database: no hash is computed in SQL.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import connections, transaction

from ml_audit.conf import resolve_alias
from ml_audit.seal_models import Seal
from ml_audit.sealing.findings import Report
from ml_audit.sealing.heads import ALGORITHM, GENESIS, head_hash, head_of, key_for, mac_of
from ml_audit.sealing.merkle import LEAF_PREFIX, MerkleBuilder, leaf_data
from ml_audit.sealing.pgcopy import copy_lines, decode_line
from ml_audit.sealing.purges import check_purges
from ml_audit.sealing.rowpass import State, copy_rows, judge, member_join, window
from ml_audit.sealing.tables import PREDICTION, TABLES, SealedTable, uuid_text
from ml_audit.sealing.worker import Task, Worker

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
    with _snapshot(alias) as own:
        state = _check_chain(alias, report, against)
        # The prediction rows below a split id go to a worker process (PostgreSQL, many rows).
        worker, split = _start_worker(alias, state, since, until) if own else (None, None)
        try:
            _check_roots(alias, report, state, since, until, progress)
            for table in TABLES:
                bound = (">=", split) if table is PREDICTION and split is not None else None
                _check_rows(alias, report, state, table, since, until, progress, bound)
                _check_deleted(alias, report, state, table, since, until)
            check_purges(alias, report, state, since, until, progress)
            if worker is not None:
                rows, pending, theirs = worker.result()
                report.merge(theirs)
                add_counts(report, PREDICTION.name, rows, pending)
                if progress is not None:
                    progress(rows)
        finally:
            if worker is not None:
                worker.stop()
    report.seconds = time.perf_counter() - started
    return report


#: Predictions (estimated) from which a worker process takes a share of the row pass, and
#: that share: the parent also checks the seal roots and the other tables meanwhile.
PARALLEL_MIN_ROWS = 200_000
WORKER_SHARE = 0.65


def _start_worker(
    alias: str, state: State, since: Any, until: Any
) -> tuple[Worker | None, str | None]:
    """On PostgreSQL with psycopg 3 and enough predictions: a worker checking the predictions
    below a split id in this transaction's snapshot, and the split id."""
    if not _copies(alias):
        return None, None
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [PREDICTION.table]
        )
        estimate = max(int(cursor.fetchone()[0]), 0)
        if estimate < PARALLEL_MIN_ROWS or estimate <= 0:
            return None, None
        # The split id: from ANALYZE's histogram of the ids (at once), else an index walk.
        cursor.execute(
            "SELECT b[greatest(1, ceil(array_length(b, 1) * %s)::int)]::text FROM (SELECT "
            "histogram_bounds::text::uuid[] AS b FROM pg_stats WHERE schemaname = "
            "current_schema() AND tablename = %s AND attname = 'id') s",
            [WORKER_SHARE, PREDICTION.table],
        )
        found = cursor.fetchone()
        if found is None or found[0] is None:
            cursor.execute(
                f"SELECT id::text FROM {PREDICTION.table} ORDER BY id OFFSET %s LIMIT 1",
                [int(estimate * WORKER_SHARE)],
            )
            found = cursor.fetchone()
        if found is None:
            return None, None
        split = found[0]
        cursor.execute(
            "SELECT pg_export_snapshot(), current_setting('DateStyle'), "
            "current_setting('IntervalStyle'), current_setting('extra_float_digits')"
        )
        snapshot, date_style, interval_style, float_digits = cursor.fetchone()
    from psycopg.conninfo import make_conninfo

    info = connections[alias].connection.info
    tail, params = _tail(PREDICTION, since, until, ("<", split))
    task = Task(
        conninfo=make_conninfo(info.dsn, password=info.password),
        snapshot=snapshot,
        settings=[
            ("DateStyle", date_style),
            ("IntervalStyle", interval_style),
            ("extra_float_digits", float_digits),
            *QUERY_SETTINGS,
        ],
        state=state,
        kind=PREDICTION.kind,
        tail=tail,
        params=params,
    )
    return Worker(task), split


#: Set for the verifier's transaction and its worker's. Two processes already share the
#: cores (this one and the worker): parallel query workers would only compete with them. The
#: queries are simple scans whose cost estimate exceeds the JIT threshold on a large trail;
#: compiling them costs more than it saves.
QUERY_SETTINGS = (("max_parallel_workers_per_gather", "0"), ("jit", "off"))


@contextmanager
def _snapshot(alias: str) -> Iterator[bool]:
    """One consistent, read-only view of the database for every pass; whether it is the
    verifier's own REPEATABLE READ transaction (one a worker can share)."""
    connection = connections[alias]
    outer = connection.in_atomic_block
    with transaction.atomic(using=alias):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                if not outer:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cursor.execute("SET LOCAL work_mem = '64MB'")
                for name, value in QUERY_SETTINGS:
                    cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        yield not outer and connection.vendor == "postgresql"


def _stream(alias: str, sql: str, params: list[Any] | None = None) -> Iterator[list[Any]]:
    """The rows of ``sql`` in chunks, from a server-side cursor where the backend has one."""
    with connections[alias].chunked_cursor() as cursor:
        cursor.execute(sql, params or [])
        while chunk := cursor.fetchmany(CHUNK):
            yield chunk


# ------------------------------------------------------------------------------ 1. the chain


def _check_chain(alias: str, report: Report, against: dict[str, Any] | None) -> State:
    state = State()
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
    alias: str, report: Report, state: State, since: Any, until: Any, progress: Progress | None
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

    if _copies(alias):
        # COPY lines, as text: "seal id, member id, kind, row id, row hash" (the leaf's texts).
        sql = sql.replace("row_id,", "row_id::text,")
        current_text = last_text = ""
        with connections[alias].connection.cursor() as cursor:
            for lines in copy_lines(cursor, sql, params):
                members += len(lines)
                if progress is not None:
                    progress(len(lines))
                same = current_text + "\t"
                if current is not None and _all_plain_in(lines, same):
                    # The whole chunk belongs to the seal being built (the usual case: seals
                    # hold up to SEAL_MAX_ROWS members): its leaves in one comprehension.
                    builder.extend(
                        [
                            (LEAF_PREFIX + line.split("\t", 2)[2].replace("\t", "|")).encode()
                            for line in lines
                        ]
                    )
                    last_text = lines[-1].split("\t", 2)[1]
                    continue
                for line in lines:
                    f: Sequence[Any] = decode_line(line) if "\\" in line else line.split("\t")
                    if f[0] != current_text:
                        if current is not None:
                            last_member = int(last_text)
                        finish()
                        current_text, current = f[0], int(f[0])
                        builder, first_member = MerkleBuilder(), int(f[1])
                    last_text = f[1]
                    builder.add(f"{LEAF_PREFIX}{f[2]}|{f[3]}|{f[4]}".encode("ascii"))
        if current is not None:
            last_member = int(last_text)
    else:
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


def _check_rows(
    alias: str,
    report: Report,
    state: State,
    table: SealedTable,
    since: Any,
    until: Any,
    progress: Progress | None,
    bound: tuple[str, Any] | None = None,
) -> None:
    """The row pass over ``table`` (its ids narrowed by ``bound``, if any: see :func:`_tail`)."""
    tail, params = _tail(table, since, until, bound)
    if _copies(alias):
        with connections[alias].connection.cursor() as cursor:
            rows, pending = copy_rows(cursor, report, state, table, tail, params, progress)
    else:
        rows, pending = _cursor_rows(alias, report, state, table, tail, params, progress)
    add_counts(report, table.name, rows, pending)


def _tail(
    table: SealedTable, since: Any, until: Any, bound: tuple[str, Any] | None
) -> tuple[str, list[Any]]:
    """What follows the row pass's ``FROM`` clause: the member join and the ``WHERE`` clause,
    with the ids (of the rows and of their members) ``<`` or ``>=`` an id if ``bound`` says so.
    """
    where, params = window(table, since, until)
    join = member_join(table)
    if bound is None:
        return join + where, params
    operator, value = bound
    assert operator in {"<", ">="}
    condition = f"{table.alias}.id {operator} %s"
    where = f"{where} AND {condition}" if where else f" WHERE {condition}"
    return f"{join} AND m.row_id {operator} %s{where}", [value, *params, value]


def add_counts(report: Report, name: str, rows: int, pending: int) -> None:
    report.checked[name] = report.checked.get(name, 0) + rows
    if pending:
        key = f"{name} not sealed yet"
        report.checked[key] = report.checked.get(key, 0) + pending


def _cursor_rows(
    alias: str,
    report: Report,
    state: State,
    table: SealedTable,
    tail: str,
    params: list[Any],
    progress: Progress | None,
) -> tuple[int, int]:
    """The row pass through a (server-side) cursor: SQLite, psycopg 2."""
    sql = table.select(connections[alias].vendor, ", m.seal_id, m.row_hash") + tail
    rehash = table.rehash
    rows = pending = 0
    for chunk in _stream(alias, sql, params):
        rows += len(chunk)
        for row in chunk:
            recomputed, problem = rehash(row[:-2])
            pending += judge(report, state, table, row, recomputed, problem)
        if progress is not None:
            progress(len(chunk))
    return rows, pending


def _copies(alias: str) -> bool:
    """Whether ``alias`` is PostgreSQL through psycopg 3, which streams ``COPY ... TO STDOUT``."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return False
    connection.ensure_connection()
    return hasattr(connection.connection, "pgconn")


# ------------------------------------------------------------------------------ 4. deletions


def _check_deleted(
    alias: str, report: Report, state: State, table: SealedTable, since: Any, until: Any
) -> None:
    a = table.alias
    sql = (
        f"SELECT m.row_id, m.seal_id FROM ml_audit_sealmember m WHERE m.kind = {table.kind} "
        f"AND NOT EXISTS (SELECT 1 FROM {table.table} {a} WHERE {a}.id = m.row_id)"
        # Removed by a recorded purge, with the very hash that was sealed: not a deletion.
        " AND NOT EXISTS (SELECT 1 FROM ml_audit_purgedrow t WHERE t.kind = m.kind"
        " AND t.row_id = m.row_id AND t.row_hash = m.row_hash)"
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


def _all_plain_in(lines: Sequence[str], prefix: str) -> bool:
    """Whether every COPY line starts with ``prefix`` (one seal's id and a tab), has the five
    columns of a member and no escape (a backslash: the general decoding handles those)."""
    return all(
        line.startswith(prefix) and line.count("\t") == 4 and "\\" not in line for line in lines
    )
