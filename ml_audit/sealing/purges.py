"""The record tables in a verification: purge records, legal holds, reviews, outcomes, reason
codes and subject erasures as sealed rows, the purge records' Merkle roots recomputed from
their tombstones, and the purge runs listed.

:func:`check_purges` runs inside :func:`ml_audit.sealing.verifier.verify`'s snapshot, after the
audit tables' passes:

1. per record table (:data:`~ml_audit.sealing.tables.RECORD_TABLES`: purge records, legal
   holds, reviews, outcomes, reason codes, subject erasures), the rows LEFT JOIN their
   ``SealMember``: each row's hash recomputed from its columns and judged as the row pass
   judges an access-log row (``changed_row``, ``inserted_row``, ``backdated_row``,
   ``late_row``), then the members whose row is gone (``deleted_row``), but for a review,
   outcome or reason codes that a recorded purge took along with its prediction (a tombstone
   of the kind, row id and the very hash that was sealed, as the verifier excuses purged
   predictions). A record is an ``inserted_row`` only once a seal's horizon passed its id, as
   any row;
2. the tombstones (``PurgedRow``) in ``(purge record, kind, row id)`` order, one streamed
   query: per purge record, the RFC 6962 root over ``leaf_data(kind, row id, row hash)`` in
   ``(kind, row id)`` order, exactly as :mod:`ml_audit.retention.purge` computed it, compared
   with the record's ``root`` and ``leaves`` and its counts per table (``purge_mismatch``), and
   tombstones naming a purge record that does not exist (``purge_mismatch``);
3. the purge runs (``Report.purges``, notices, not findings): per run when, by whom, as which
   role, the rows removed per table, and per (target, model, tenant) the rule, its cutoff and
   the holds in force.

``since``/``until`` select the purge records by ``purged_at`` (the time a purge record records)
and the holds by ``created_at``, as the row pass selects rows by the time they record; the
tombstones of the selected purge records are checked, and orphaned tombstones always.

Purge records are few (one per batch of ``PURGE_BATCH_SIZE`` rows): their roots and counts are
held in memory; the tombstones (one per purged row) and the rows of every record table are
streamed and never held.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.db import connections

from ml_audit.sealing.findings import Report
from ml_audit.sealing.merkle import EMPTY_ROOT, MerkleBuilder
from ml_audit.sealing.rowpass import State, judge
from ml_audit.sealing.tables import (
    BY_KIND,
    OUTCOME,
    PURGE,
    REASON_CODES,
    RECORD_TABLES,
    REVIEW,
    SealedTable,
    purge_fields,
)

__all__ = ["check_purges"]

CHUNK = 10_000
Progress = Callable[[int], None]
#: What :func:`_check_tombstones` needs of a purge record: root, leaves, non-zero counts.
Expected = tuple[str, int, dict[str, int] | None]
#: The record tables whose rows a purge removes (with their prediction, tombstoned).
PURGED_WITH_PREDICTIONS = frozenset({REVIEW.kind, OUTCOME.kind, REASON_CODES.kind})


def check_purges(
    alias: str,
    report: Report,
    state: State,
    since: Any = None,
    until: Any = None,
    progress: Progress | None = None,
) -> None:
    """Check the record tables and the purges' tombstones of ``alias`` into ``report``,
    and list the purge runs in ``report.purges`` (module docstring)."""
    expected: dict[str, Expected] = {}
    runs = _Runs()

    def visit(row: Sequence[Any]) -> None:
        fields, _ = purge_fields(row)
        expected[fields["id"]] = (fields["root"], fields["leaves"], _nonzero(fields["counts"]))
        runs.add(fields)

    for table in RECORD_TABLES:
        _check_rows(
            alias, report, state, table, since, until, progress, visit if table is PURGE else None
        )
        _check_deleted(alias, report, state, table, since, until)
    _check_tombstones(alias, report, expected, since, until, progress)
    report.purges = runs.as_json()


# ------------------------------------------------------------------------------ streaming


def _stream(alias: str, sql: str, params: list[Any]) -> Iterator[list[Any]]:
    """The rows of ``sql`` in chunks, from a server-side cursor where the backend has one."""
    with connections[alias].chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(CHUNK):
            yield chunk


def _window(column: str, since: Any, until: Any) -> tuple[list[str], list[Any]]:
    clauses, params = [], []
    if since is not None:
        clauses.append(f"{column} >= %s")
        params.append(since)
    if until is not None:
        clauses.append(f"{column} < %s")
        params.append(until)
    return clauses, params


# ------------------------------------------------------------------------------ 1. sealed rows


def _check_rows(
    alias: str,
    report: Report,
    state: State,
    table: SealedTable,
    since: Any,
    until: Any,
    progress: Progress | None,
    visit: Callable[[Sequence[Any]], None] | None,
) -> None:
    """The row pass over a record table, in the order of the time it records."""
    a = table.alias
    vendor = connections[alias].vendor
    clauses, params = _window(table.recorded, since, until)
    sql = (
        table.select(vendor, ", m.seal_id, m.row_hash")
        + f" LEFT JOIN ml_audit_sealmember m ON m.kind = {table.kind} AND m.row_id = {a}.id"
        + (" WHERE " + " AND ".join(clauses) if clauses else "")
        + f" ORDER BY {table.recorded}, {a}.id"
    )
    rows = pending = 0
    for chunk in _stream(alias, sql, params):
        rows += len(chunk)
        for row in chunk:
            columns = row[:-2]
            recomputed, problem = table.rehash(columns)
            pending += judge(report, state, table, row, recomputed, problem)
            if visit is not None:
                visit(columns)
        if progress is not None:
            progress(len(chunk))
    report.checked[table.name] = report.checked.get(table.name, 0) + rows
    if pending:
        key = f"{table.name} not sealed yet"
        report.checked[key] = report.checked.get(key, 0) + pending


def _check_deleted(
    alias: str, report: Report, state: State, table: SealedTable, since: Any, until: Any
) -> None:
    a = table.alias
    sql = (
        f"SELECT m.row_id, m.seal_id FROM ml_audit_sealmember m WHERE m.kind = {table.kind} "
        f"AND NOT EXISTS (SELECT 1 FROM {table.table} {a} WHERE {a}.id = m.row_id) "
    )
    if table.kind in PURGED_WITH_PREDICTIONS:
        # Removed by a recorded purge, with the very hash that was sealed: not a deletion.
        sql += (
            "AND NOT EXISTS (SELECT 1 FROM ml_audit_purgedrow t WHERE t.kind = m.kind "
            "AND t.row_id = m.row_id AND t.row_hash = m.row_hash) "
        )
    sql += "ORDER BY m.id"
    for chunk in _stream(alias, sql, []):
        for row_id, seal_id in chunk:
            if seal_id in state.seals and not state.overlaps(seal_id, since, until):
                continue
            report.add(
                "deleted_row",
                {"table": table.name, "id": _uuid(row_id), "seal": seal_id},
                "sealed, and no longer in the table",
            )


# ------------------------------------------------------------------------------ 2. tombstones


def _check_tombstones(
    alias: str,
    report: Report,
    expected: dict[str, Expected],
    since: Any,
    until: Any,
    progress: Progress | None,
) -> None:
    """Each selected purge record's root, leaf count and counts per table, recomputed from its
    tombstones in one ordered, streamed query; tombstones of no purge record."""
    postgres = connections[alias].vendor == "postgresql"
    # Texts on PostgreSQL (canonical UUIDs); SQLite stores 32 hex digits (see _uuid).
    columns = (
        "t.purge_id::text, t.kind, t.row_id::text" if postgres else "t.purge_id, t.kind, t.row_id"
    )
    sql = f"SELECT {columns}, t.row_hash FROM ml_audit_purgedrow t"
    clauses, params = _window("r.purged_at", since, until)
    if clauses:
        # Orphans (no purge record) are always read: they belong to no window.
        sql += (
            " LEFT JOIN ml_audit_purgerecord r ON r.id = t.purge_id"
            f" WHERE r.id IS NULL OR ({' AND '.join(clauses)})"
        )
    sql += " ORDER BY t.purge_id, t.kind, t.row_id"
    names = {kind: table.name for kind, table in BY_KIND.items()}
    known = set(names.values())
    seen: set[str] = set()
    current: Any = None
    purge_id = ""
    builder = MerkleBuilder()
    kinds: dict[int, int] = {}
    tombstones = 0

    def finish() -> None:
        if current is None:
            return
        seen.add(purge_id)
        ref = {"table": PURGE.name, "id": purge_id}
        record = expected.get(purge_id)
        if record is None:
            report.add(
                "purge_mismatch",
                ref,
                f"{builder.count} tombstones name purge record {purge_id}, which does not exist",
            )
            return
        root, leaves, counts = record
        if (builder.root(), builder.count) != (root, leaves):
            report.add(
                "purge_mismatch",
                ref,
                f"its {builder.count} tombstones hash to another root than the {leaves} rows "
                "it recorded",
            )
            return
        # Per table for the sealed tables' kinds (predictions and what a purge takes along with
        # them: explanations, reviews, outcomes, reason codes; access-log rows); tombstones of
        # a kind no table has in the total only.
        found = {names[kind]: n for kind, n in sorted(kinds.items()) if kind in names}
        claimed = None if counts is None else {k: n for k, n in counts.items() if k in known}
        if claimed != found or counts is None or sum(counts.values()) != builder.count:
            listed = {names.get(kind, f"kind {kind}"): n for kind, n in sorted(kinds.items())}
            report.add(
                "purge_mismatch",
                ref,
                f"its counts per table ({_counts_text(counts)}) differ from its tombstones "
                f"({_counts_text(listed)})",
            )

    for chunk in _stream(alias, sql, params):
        tombstones += len(chunk)
        for purge, kind, row_id, row_hash in chunk:
            if purge != current:
                finish()
                current, purge_id = purge, _uuid(purge)
                builder, kinds = MerkleBuilder(), {}
            kinds[kind] = kinds.get(kind, 0) + 1
            # leaf_data's text, encoded as UTF-8 rather than ASCII: a row hash rewritten with
            # other characters is a mismatch, not a crash (the bytes of valid leaves are equal).
            builder.add(f"ml_audit.leaf/1|{kind}|{_uuid(row_id)}|{row_hash}".encode())
        if progress is not None:
            progress(len(chunk))
    finish()
    for purge_id, (root, leaves, _) in expected.items():
        if purge_id not in seen and (leaves, root) != (0, EMPTY_ROOT):
            report.add(
                "purge_mismatch",
                {"table": PURGE.name, "id": purge_id},
                f"its {leaves} tombstones are gone",
            )
    report.checked["purged rows"] = report.checked.get("purged rows", 0) + tombstones


def _uuid(value: Any) -> str:
    """A UUID column's value as canonical text: PostgreSQL's ``::text`` already is; SQLite's
    32 hex digits get their hyphens (without parsing: once per tombstone)."""
    text = str(value)
    if len(text) == 32:
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}".lower()
    return text.lower()


def _nonzero(counts: Any) -> dict[str, int] | None:
    """A purge record's counts without the tables it removed nothing from; ``None`` when they
    are not a ``{table: count}`` dict (then they match no tombstones)."""
    if not isinstance(counts, dict):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in counts.values()):
        return None
    return {str(name): counts[name] for name in sorted(counts, key=_table_order) if counts[name]}


_ORDER = {table.name: table.kind for table in BY_KIND.values()}


def _table_order(name: Any) -> tuple[int, str]:
    """Tables in kind order (prediction, explanation, access, ...), unknown names after."""
    return _ORDER.get(name, len(_ORDER) + 1), str(name)


def _counts_text(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "not a {table: count} dict"
    return ", ".join(f"{n} {name}" for name, n in counts.items()) or "none"


# ------------------------------------------------------------------------------ 3. the runs


class _Runs:
    """The purge runs, built from the purge records in ``purged_at`` order."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}

    def add(self, record: dict[str, Any]) -> None:
        run = self.runs.get(record["run_id"])
        policy = record["policy"] if isinstance(record["policy"], dict) else {}
        if run is None:
            run = self.runs[record["run_id"]] = {
                "run_id": record["run_id"],
                "purged_from": record["purged_at"],
                "purged_to": record["purged_at"],
                "ran_by": record["ran_by"],
                "database_role": record["database_role"],
                "batches": 0,
                "rows": 0,
                "counts": {},
                "policy": policy.get("policy"),
                "groups": [],
            }
        run["purged_to"] = max(run["purged_to"], record["purged_at"])
        run["batches"] += 1
        run["rows"] += record["leaves"] or 0
        counts = _nonzero(record["counts"]) or {}
        _add_counts(run["counts"], counts)
        key = (
            record["target"],
            record["model_name"],
            record["tenant_id"],
            policy.get("rule"),
            policy.get("cutoff"),
        )
        group = next((g for g in run["groups"] if _group_key(g) == key), None)
        if group is None:
            group = {
                "target": record["target"],
                "model_name": record["model_name"],
                "tenant_id": record["tenant_id"],
                "rule": policy.get("rule"),
                "days": policy.get("days"),
                "cutoff": policy.get("cutoff"),
                "holds": [],
                "batches": 0,
                "counts": {},
                "time_from": record["time_from"],
                "time_to": record["time_to"],
            }
            run["groups"].append(group)
        group["batches"] += 1
        _add_counts(group["counts"], counts)
        group["time_from"] = min(group["time_from"], record["time_from"])
        group["time_to"] = max(group["time_to"], record["time_to"])
        holds = policy.get("holds")
        for hold in holds if isinstance(holds, list) else []:
            if hold not in group["holds"]:
                group["holds"].append(hold)

    def as_json(self) -> list[dict[str, Any]]:
        runs = sorted(self.runs.values(), key=lambda run: (run["purged_from"], run["run_id"]))
        # JSON-safe, whatever a (tampered) policy column held.
        return [json.loads(json.dumps(run, default=str)) for run in runs]


def _group_key(group: dict[str, Any]) -> tuple[Any, ...]:
    return (
        group["target"],
        group["model_name"],
        group["tenant_id"],
        group["rule"],
        group["cutoff"],
    )


def _add_counts(total: dict[str, int], counts: dict[str, int]) -> None:
    for name, n in counts.items():
        total[name] = total.get(name, 0) + n
