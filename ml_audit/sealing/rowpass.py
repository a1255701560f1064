"""The row pass of the verifier, free of Django so that a worker process can run it: the
verdict on one row (:func:`judge`), and the pass over ``COPY`` lines on PostgreSQL
(:func:`copy_rows`). ``verifier`` runs the cursor pass (SQLite) with the same :func:`judge`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from ml_audit.sealing.findings import Report
from ml_audit.sealing.pgcopy import (
    PREDICTION_EXPRESSIONS,
    copy_lines,
    decode_line,
    explanation_fast,
    generic_row,
    prediction_fast,
    prediction_generic,
    read_registry,
)
from ml_audit.sealing.tables import (
    EXPLANATION,
    PREDICTION,
    SealedTable,
    created_at_of,
    uuid_text,
    when,
)

__all__ = ["State", "copy_rows", "judge", "member_join", "window"]

Progress = Callable[[int], None]


class State:
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


def window(table: SealedTable, since: Any, until: Any) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if since is not None:
        clauses.append(f"{table.recorded} >= %s")
        params.append(since)
    if until is not None:
        clauses.append(f"{table.recorded} < %s")
        params.append(until)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def judge(
    report: Report,
    state: State,
    table: SealedTable,
    row: Sequence[Any],
    recomputed: str,
    problem: str | None,
) -> int:
    """Report what one row (``table.columns`` + seal id + sealed hash) shows; 1 if it waits
    for a seal, else 0."""
    name, stores_hash = table.name, table.stores_hash
    seal_id, sealed_hash = row[-2], row[-1]
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
    horizon = state.horizon
    if seal_id is None:
        row_id = uuid_text(row[0])
        recorded = when(row[table.recorded_index])
        created = created_at_of(row_id, recorded)
        if horizon is not None and created < horizon:
            report.add(
                "backdated_row" if recorded < horizon else "inserted_row",
                {"table": name, "id": row_id},
                f"in no seal, though created {created.isoformat()} before the newest "
                f"horizon {horizon.isoformat()}",
            )
            return 0
        return 1
    if seal_id in state.previous_horizon:
        row_id = uuid_text(row[0])
        created = created_at_of(row_id, when(row[table.recorded_index]))
        if created < state.previous_horizon[seal_id]:
            report.add(
                "late_row",
                _row_ref(name, row[0], seal_id),
                "sealed later than the seal before its seal vouched for (a replay "
                "after an outage, or a row inserted before it was sealed)",
                notice=True,
            )
    return 0


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def copy_rows(
    cursor: Any,
    report: Report,
    state: State,
    table: SealedTable,
    tail: str,
    params: Sequence[Any],
    progress: Progress | None = None,
) -> tuple[int, int]:
    """The row pass on PostgreSQL: ``COPY`` lines, hashed by the fast paths of
    :mod:`ml_audit.sealing.pgcopy` where they vouch for the result, by ``table.rehash`` on the
    generic row elsewhere. A row that is intact, sealed with its hash, and created (per its
    UUIDv7 id) well after the horizon before its seal's is done with here; any other row goes
    through :func:`judge` with the generic row, as on the cursor path. ``cursor`` is a psycopg 3
    cursor in the verification's snapshot; ``tail`` follows the ``FROM`` clause (the member
    join, then any ``WHERE``). Returns ``(rows, rows not sealed yet)``."""
    prediction = table is PREDICTION
    if prediction:
        sql = f"SELECT {', '.join(PREDICTION_EXPRESSIONS)} FROM {table.table} {table.alias}"
    else:
        sql = table.select("postgresql", ", m.seal_id, m.row_hash")
    ints = [table.columns.index("e.revision")] if table is EXPLANATION else []
    if not table.stores_hash:
        ints = [table.columns.index("l.status_code"), table.columns.index("l.result_count")]
    ints.append(len(table.columns))  # seal id
    rehash = table.rehash
    stored_index = len(table.columns) - 1 if table.stores_hash else -1
    if prediction:
        stored_index = PREDICTION_EXPRESSIONS.index("p.content_hash")
    # Per seal id's text, the first (canonical, lower-case) "xxxxxxxx-xxxx" prefix of a UUIDv7
    # whose millisecond is safely after the horizon before the seal: created_at_of(id) >
    # horizon + 2 µs. A row id at or above it is no late row (uuid::text is lower-case; an
    # upper-case digit could only compare lower than its value, sending the row to judge()).
    before = {
        str(seal_id): _late_bound(horizon) for seal_id, horizon in state.previous_horizon.items()
    }
    cache: dict[str, Any] = {}
    rows = pending = 0
    registry = read_registry(cursor) if prediction else ({}, {})
    for lines in copy_lines(cursor, sql + tail, params):
        rows += len(lines)
        for line in lines:
            f: Sequence[Any] = line.split("\t")
            if "\\" in line:
                f = decode_line(line)
            if prediction:
                fast = prediction_fast(f, registry, cache)
            elif stored_index >= 0:
                fast = explanation_fast(f)
            else:
                fast = None
            if fast is not None and fast[1] is None:
                recomputed = fast[0]
                if recomputed == f[-1] and recomputed == f[stored_index]:
                    # Sealed with this very hash: only a late row remains to be told.
                    previous = before.get(f[-2])
                    if previous is None:
                        continue
                    rid = f[0]
                    if rid[14] == "7" and rid[19] in "89ab" and rid[:13] >= previous:
                        continue
            row = prediction_generic(f, registry) if prediction else generic_row(f, ints, ())
            if fast is None:
                fast = rehash(row[:-2])
            pending += judge(report, state, table, row, *fast)
        if progress is not None:
            progress(len(lines))
    return rows, pending


def _late_bound(horizon: dt.datetime) -> str:
    """The least ``xxxxxxxx-xxxx`` prefix (48-bit millisecond of a UUIDv7, lower-case hex) whose
    millisecond ``ms`` has ``ms * 1000 > horizon + 2`` (microseconds since the epoch)."""
    micros = (horizon - _EPOCH) // _MICROSECOND
    first = max((micros + 2) // 1000 + 1, 0)
    if first >= 1 << 48:
        return "~"  # above every id
    digits = f"{first:012x}"
    return f"{digits[:8]}-{digits[8:]}"


def _row_ref(name: str, row_id: Any, seal_id: int | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"table": name, "id": uuid_text(row_id)}
    if seal_id is not None:
        ref["seal"] = seal_id
    return ref


def member_join(table: SealedTable) -> str:
    """The row pass's join of each row to its ``SealMember`` (if any)."""
    return (
        f" LEFT JOIN ml_audit_sealmember m ON m.kind = {table.kind} AND m.row_id = {table.alias}.id"
    )
