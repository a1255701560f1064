"""The sealed tables, and the hash of each of their rows recomputed from its columns.

Each :class:`SealedTable` says which rows a seal covers and how one row is hashed:

=====  ===============  ==================================================================
kind   table            row hash
=====  ===============  ==================================================================
1      prediction       its ``content_hash``: SHA-256 of ``PredictionRecord.stored_fields()``
                        canonical JSON, recomputed by :func:`prediction_hash`
2      explanation      its ``content_hash`` (``ExplanationRecord.stored_fields()``),
                        recomputed by :func:`explanation_hash`
3      access           no stored hash: SHA-256 of the canonical JSON of
                        :func:`access_fields` (every column), computed when it is sealed
4      purge            a purge record (``ml_audit_purgerecord``): no stored hash, SHA-256
                        of the canonical JSON of :func:`purge_fields` (every column)
5      hold             a legal hold, placement or release (``ml_audit_legalhold``): no
                        stored hash, SHA-256 of the canonical JSON of :func:`hold_fields`
6      review           a human review (``ml_audit_review``): no stored hash, SHA-256 of
                        the canonical JSON of
                        :func:`ml_audit.decision_hashes.review_fields` (every column)
7      outcome          an observed outcome (``ml_audit_outcome``): no stored hash,
                        :func:`ml_audit.decision_hashes.outcome_fields`
8      reason_codes     reason codes of an explanation revision (``ml_audit_reasoncodes``):
                        no stored hash, :func:`ml_audit.decision_hashes.reason_codes_fields`
9      erasure          a forgotten subject (``ml_audit_subjecterasure``): no stored hash,
                        SHA-256 of the canonical JSON of :func:`erasure_fields` (every column)
=====  ===============  ==================================================================

``SealMember.kind`` holds these numbers. Kinds 1-3 (:data:`TABLES`) are the audit rows the
verifier's row pass streams (COPY fast paths, a worker process); kinds 4-9
(:data:`RECORD_TABLES`) are the records beside them: the retention records (4-5), the human
side of a decision (6-8, whose hashes :mod:`ml_audit.decision_hashes` defines, as a purge's
tombstones use them) and the subject erasures (9). They have few rows next to the
predictions, are sealed like any other (so a forged, altered or removed one is reported with
the same finding classes) and are checked by :mod:`ml_audit.sealing.purges` through a cursor.
:data:`SEALED_TABLES` is both, what the sealer seals. ``SubjectKey`` is not sealed: forgetting
a subject deletes its row, by design.

The recomputations read raw columns (``values_list``-like tuples from a cursor), not model
instances, so that ``ml_audit_verify`` streams a million rows in seconds; they are held equal to
``store.verify_event`` / ``explanation_writer.verify_explanation`` by
``tests/seals/test_row_hashes.py``. Canonical JSON is written by orjson when it is installed
and the text is the same as :func:`ml_audit.canonical.canonical_json`'s (orjson writes floats
below 1e-4 differently, so a column whose text may hold one falls back to the standard
encoder), else by the standard encoder.

Later row types are sealed by adding a table here (a kind number is never reused).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ml_audit import decision_hashes
from ml_audit.canonical import RECORD_SCHEMA, canonical_json

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "ACCESS",
    "ERASURE",
    "EXPLANATION",
    "HOLD",
    "OUTCOME",
    "PREDICTION",
    "PURGE",
    "REASON_CODES",
    "RECORD_TABLES",
    "REVIEW",
    "SEALED_TABLES",
    "TABLES",
    "SealedTable",
    "access_fields",
    "access_hash",
    "created_at_of",
    "erasure_fields",
    "erasure_hash",
    "explanation_hash",
    "hold_fields",
    "hold_hash",
    "prediction_hash",
    "purge_fields",
    "purge_hash",
]

_sha256 = hashlib.sha256


class _Slow(Exception):
    """A value the fast JSON path cannot vouch for: use the standard encoder."""


_LONG_DIGITS = re.compile(r"\d{19}").search


def _loads(text: Any) -> tuple[Any, bool]:
    """A JSON column's value, and whether orjson may write its canonical JSON (see above)."""
    if text is None:
        return None, True
    if not isinstance(text, str):  # already decoded by a driver
        return text, False
    # orjson writes every float as json does but those below 1e-4 in magnitude ("1e-7" for
    # "1e-07", "0.00001" for "1e-05"; tests/seals/test_row_hashes.py). In a column's text such
    # a float has an exponent (Python's JSON: SQLite) or four zeros after the point
    # (PostgreSQL's numeric). orjson also reads integers beyond 64 bits as floats: 19 digits
    # in a row fall back too. A string containing any of these only costs the fast path.
    if (
        _orjson is not None
        and "e-" not in text
        and "E-" not in text
        and "0.0000" not in text
        and (len(text) < 19 or _LONG_DIGITS(text) is None)
    ):
        try:
            return _orjson.loads(text), True
        except _orjson.JSONDecodeError:  # e.g. an integer beyond 64 bits, NaN
            pass
    return json.loads(text), False


def _plain_float(value: Any) -> bool:
    """Whether orjson writes this column value as ``json`` does (not a float below 1e-4)."""
    return not isinstance(value, float) or value == 0 or abs(value) >= 1e-4


def _canonical_hash(value: dict[str, Any], fast: bool) -> str:
    if fast and _orjson is not None:
        try:
            return _sha256(_orjson.dumps(value, option=_orjson.OPT_SORT_KEYS)).hexdigest()
        except TypeError:  # lone surrogates, integers beyond 64 bits
            pass
    return _sha256(canonical_json(value).encode("utf-8")).hexdigest()


def _iso(value: Any) -> str:
    """A timestamp column's value as the records write it: ``2024-05-01T12:00:00.000000+00:00``.

    Takes an aware datetime or the UTC text the verifier selects (``YYYY-MM-DD HH:MM:SS[.f]``:
    SQLite's storage, PostgreSQL's ``(column AT TIME ZONE 'UTC')::text``), which is rewritten
    without parsing it."""
    if isinstance(value, str) and len(value) >= 19 and value[10] == " " and value[4] == "-":
        if len(value) == 19:
            return f"{value[:10]}T{value[11:]}.000000+00:00"
        if value[19] == "." and len(value) <= 26 and value[20:].isdigit():
            return f"{value[:10]}T{value[11:19]}.{value[20:].ljust(6, '0')}+00:00"
    return when(value).astimezone(dt.UTC).isoformat(timespec="microseconds")


# ----------------------------------------------------------------------------- column decoding


def uuid_text(value: Any) -> str:
    """A UUID column's value (UUID, or SQLite's 32 hex digits) as canonical text."""
    if isinstance(value, str) and len(value) == 36:  # PostgreSQL's uuid::text is canonical
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(uuid.UUID(str(value)))


def when(value: Any) -> dt.datetime:
    """A timestamp column's value (aware datetime, or SQLite's UTC text) as aware datetime."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def created_at_of(row_id: str, recorded: dt.datetime) -> dt.datetime:
    """When the library created a row: the time in its UUIDv7 id (milliseconds), or, for an id
    of another version (0.2.0's rows, ids given by a caller), the row's recorded time."""
    value = uuid.UUID(row_id)
    if value.version == 7:
        return dt.datetime.fromtimestamp((value.int >> 80) / 1000, dt.UTC)
    return recorded


# ----------------------------------------------------------------------------- predictions

#: Columns of ``ml_audit_predictionevent`` (p), ``ml_audit_modelversion`` (mv) and
#: ``ml_audit_requestingactor`` (a) that :func:`prediction_hash` reads, in its order.
PREDICTION_COLUMNS = (
    "p.id",
    "p.prediction_id",
    "p.timestamp",
    "mv.model_name",
    "mv.version",
    "p.environment",
    "a.actor_type",
    "a.actor_id",
    "a.tenant_id",
    "p.tenant_id",
    "p.client_ip",
    "p.user_agent",
    "p.auth_context",
    "p.features",
    "p.redaction",
    "p.input_fingerprint",
    "p.output",
    "p.confidence",
    "p.decision_outcome",
    "p.status",
    "p.error_type",
    "p.error_message",
    "p.latency_ms",
    "p.metadata",
    "p.trace_id",
    "p.span_id",
    "p.parent_span_id",
    "p.correlation_id",
    "p.subject_ref",
    "p.content_hash",
)


def prediction_hash(row: Sequence[Any]) -> tuple[str, str | None]:
    """``(recomputed content hash, problem)`` of a row of :data:`PREDICTION_COLUMNS`.

    ``problem`` names a column that disagrees with what the writer stores although the content
    hash does not cover it (the writer derives ``tenant_id`` from the actor and stores no request
    context without an actor), else ``None``.
    """
    (
        row_id,
        prediction_id,
        timestamp,
        model_name,
        model_version,
        environment,
        actor_type,
        actor_id,
        actor_tenant,
        tenant_id,
        client_ip,
        user_agent,
        auth_context,
        features,
        redaction,
        input_fingerprint,
        output,
        confidence,
        decision_outcome,
        status,
        error_type,
        error_message,
        latency_ms,
        metadata,
        trace_id,
        span_id,
        parent_span_id,
        correlation_id,
        subject_ref,
        _content_hash,
    ) = row
    fast = True
    auth, ok = _loads(auth_context)
    fast &= ok
    features_value, ok = _loads(features)
    fast &= ok
    redaction_value, ok = _loads(redaction)
    fast &= ok
    output_value, ok = _loads(output)
    fast &= ok
    metadata_value, ok = _loads(metadata)
    fast &= ok
    problem = None
    if actor_type is None:
        actor = None
        tenant = ""
        if client_ip is not None or user_agent or auth:
            problem = "request context on a prediction without an actor"
        client_ip, user_agent, auth = None, "", {}
    else:
        tenant = actor_tenant or ""
        actor = {"type": actor_type, "id": actor_id, "tenant": tenant}
        user_agent = user_agent or ""
        auth = dict(auth or {})
    if tenant_id != tenant:
        problem = "tenant_id differs from the actor's tenant"
    fields = {
        "schema": RECORD_SCHEMA,
        "id": uuid_text(row_id),
        "prediction_id": prediction_id,
        "timestamp": _iso(timestamp),
        "model": {"name": model_name, "version": model_version},
        "environment": environment,
        "actor": actor,
        "tenant_id": tenant,
        "client_ip": client_ip,
        "user_agent": user_agent,
        "auth_context": auth,
        "features": features_value,
        "redaction": redaction_value,
        "input_fingerprint": input_fingerprint,
        "output": output_value,
        "confidence": confidence,
        "decision_outcome": decision_outcome,
        "status": status,
        "error_type": error_type,
        "error_message": error_message,
        "latency_ms": latency_ms,
        "metadata": metadata_value,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_span_id,
        "correlation_id": correlation_id,
    }
    if subject_ref:  # as PredictionRecord.stored_fields: only when set
        fields["subject_ref"] = subject_ref
    fast &= _plain_float(confidence) and _plain_float(latency_ms)
    return _canonical_hash(fields, fast), problem


# ----------------------------------------------------------------------------- explanations

EXPLANATION_COLUMNS = (
    "e.id",
    "e.prediction_id",
    "e.revision",
    "e.method",
    "e.method_version",
    "e.payload",
    "e.summary_text",
    "e.status",
    "e.generated_at",
    "e.created_at",
    "e.content_hash",
)


def explanation_hash(row: Sequence[Any]) -> tuple[str, str | None]:
    """``(recomputed content hash, None)`` of a row of :data:`EXPLANATION_COLUMNS`."""
    (
        row_id,
        prediction_pk,
        revision,
        method,
        method_version,
        payload,
        summary_text,
        status,
        generated_at,
        created_at,
        _content_hash,
    ) = row
    payload_value, fast = _loads(payload)
    fields = {
        "schema": RECORD_SCHEMA,
        "id": uuid_text(row_id),
        "prediction": uuid_text(prediction_pk),
        "revision": revision,
        "method": method,
        "method_version": method_version,
        "payload": payload_value,
        "summary_text": summary_text,
        "status": status,
        "generated_at": _iso(generated_at),
        "created_at": _iso(created_at),
    }
    return _canonical_hash(fields, fast), None


# ----------------------------------------------------------------------------- access log

ACCESS_COLUMNS = (
    "l.id",
    "l.accessed_at",
    "l.user_id",
    "l.username",
    "l.endpoint",
    "l.method",
    "l.path",
    "l.query",
    "l.status_code",
    "l.returned_ids",
    "l.result_count",
    "l.client_ip",
    "l.tenant_scope",
)


def access_fields(row: Sequence[Any]) -> tuple[dict[str, Any], bool]:
    """The canonical content of an access-log row of :data:`ACCESS_COLUMNS` (every column,
    ``"table": "accesslog"`` and the schema version), and whether orjson parsed its JSON."""
    (
        row_id,
        accessed_at,
        user_id,
        username,
        endpoint,
        method,
        path,
        query,
        status_code,
        returned_ids,
        result_count,
        client_ip,
        tenant_scope,
    ) = row
    query_value, fast = _loads(query)
    returned, ok = _loads(returned_ids)
    fast &= ok
    scope, ok = _loads(tenant_scope)
    fast &= ok
    fields = {
        "schema": RECORD_SCHEMA,
        "table": "accesslog",
        "id": uuid_text(row_id),
        "accessed_at": _iso(accessed_at),
        "user_id": user_id,
        "username": username,
        "endpoint": endpoint,
        "method": method,
        "path": path,
        "query": query_value,
        "status_code": status_code,
        "returned_ids": returned,
        "result_count": result_count,
        "client_ip": client_ip,
        "tenant_scope": scope,
    }
    return fields, fast


def access_hash(row: Sequence[Any]) -> tuple[str, str | None]:
    """``(hash, None)`` of an access-log row: SHA-256 of :func:`access_fields`' canonical JSON."""
    fields, fast = access_fields(row)
    return _canonical_hash(fields, fast), None


# ----------------------------------------------------------------------------- retention records


def _iso_or_none(value: Any) -> str | None:
    return None if value is None else _iso(value)


def _int_or_none(value: Any) -> int | None:
    """An integer column (a driver's int, or its text where a row was read as text)."""
    return None if value is None else int(value)


PURGE_COLUMNS = (
    "r.id",
    "r.run_id",
    "r.batch",
    "r.purged_at",
    "r.target",
    "r.model_name",
    "r.tenant_id",
    "r.counts",
    "r.leaves",
    "r.root",
    "r.time_from",
    "r.time_to",
    "r.policy",
    "r.ran_by",
    "r.database_role",
)


def purge_fields(row: Sequence[Any]) -> tuple[dict[str, Any], bool]:
    """The canonical content of a purge record of :data:`PURGE_COLUMNS` (every column,
    ``"table": "purgerecord"`` and the schema version), and whether orjson parsed its JSON."""
    (
        row_id,
        run_id,
        batch,
        purged_at,
        target,
        model_name,
        tenant_id,
        counts,
        leaves,
        root,
        time_from,
        time_to,
        policy,
        ran_by,
        database_role,
    ) = row
    counts_value, fast = _loads(counts)
    policy_value, ok = _loads(policy)
    fast &= ok
    fields = {
        "schema": RECORD_SCHEMA,
        "table": "purgerecord",
        "id": uuid_text(row_id),
        "run_id": uuid_text(run_id),
        "batch": _int_or_none(batch),
        "purged_at": _iso(purged_at),
        "target": target,
        "model_name": model_name,
        "tenant_id": tenant_id,
        "counts": counts_value,
        "leaves": _int_or_none(leaves),
        "root": root,
        "time_from": _iso(time_from),
        "time_to": _iso(time_to),
        "policy": policy_value,
        "ran_by": ran_by,
        "database_role": database_role,
    }
    return fields, fast


def purge_hash(row: Sequence[Any]) -> tuple[str, str | None]:
    """``(hash, None)`` of a purge record: SHA-256 of :func:`purge_fields`' canonical JSON."""
    fields, fast = purge_fields(row)
    return _canonical_hash(fields, fast), None


HOLD_COLUMNS = (
    "h.id",
    "h.action",
    "h.releases_id",
    "h.tenant_id",
    "h.actor_type",
    "h.actor_id",
    "h.model_name",
    "h.prediction_ids",
    "h.time_from",
    "h.time_to",
    "h.reference",
    "h.reason",
    "h.created_by",
    "h.created_at",
)


def hold_fields(row: Sequence[Any]) -> tuple[dict[str, Any], bool]:
    """The canonical content of a legal-hold row of :data:`HOLD_COLUMNS` (every column,
    ``"table": "legalhold"`` and the schema version), and whether orjson parsed its JSON."""
    (
        row_id,
        action,
        releases_id,
        tenant_id,
        actor_type,
        actor_id,
        model_name,
        prediction_ids,
        time_from,
        time_to,
        reference,
        reason,
        created_by,
        created_at,
    ) = row
    ids, fast = _loads(prediction_ids)
    fields = {
        "schema": RECORD_SCHEMA,
        "table": "legalhold",
        "id": uuid_text(row_id),
        "action": action,
        "releases": None if releases_id is None else uuid_text(releases_id),
        "tenant_id": tenant_id,
        "actor_type": actor_type,
        "actor_id": actor_id,
        "model_name": model_name,
        "prediction_ids": ids,
        "time_from": _iso_or_none(time_from),
        "time_to": _iso_or_none(time_to),
        "reference": reference,
        "reason": reason,
        "created_by": created_by,
        "created_at": _iso(created_at),
    }
    return fields, fast


def hold_hash(row: Sequence[Any]) -> tuple[str, str | None]:
    """``(hash, None)`` of a legal-hold row: SHA-256 of :func:`hold_fields`' canonical JSON."""
    fields, fast = hold_fields(row)
    return _canonical_hash(fields, fast), None


# ----------------------------------------------------------------------------- subject erasures

ERASURE_COLUMNS = (
    "x.id",
    "x.subject_ref",
    "x.tenant_id",
    "x.predictions",
    "x.erased_at",
    "x.erased_by",
    "x.reference",
    "x.reason",
)


def erasure_fields(row: Sequence[Any]) -> dict[str, Any]:
    """The canonical content of a subject erasure of :data:`ERASURE_COLUMNS` (every column,
    ``"table": "subjecterasure"`` and the schema version)."""
    row_id, subject_ref, tenant_id, predictions, erased_at, erased_by, reference, reason = row
    return {
        "schema": RECORD_SCHEMA,
        "table": "subjecterasure",
        "id": uuid_text(row_id),
        "subject_ref": subject_ref,
        "tenant_id": tenant_id,
        "predictions": _int_or_none(predictions),
        "erased_at": _iso(erased_at),
        "erased_by": erased_by,
        "reference": reference,
        "reason": reason,
    }


def erasure_hash(row: Sequence[Any]) -> tuple[str, str | None]:
    """``(hash, None)`` of a subject erasure: SHA-256 of :func:`erasure_fields`' canonical
    JSON."""
    return _canonical_hash(erasure_fields(row), True), None


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class SealedTable:
    """One sealed table: its ``kind`` number in ``SealMember``, name, SQL and row hasher."""

    kind: int
    name: str
    table: str
    alias: str
    #: Column of the time the row records (``created_at_of``'s fallback for non-v7 ids), and
    #: its position in ``columns``.
    recorded: str
    recorded_index: int
    columns: tuple[str, ...]
    joins: str
    #: Recomputes a row's hash from ``columns``: ``(hash, problem or None)``.
    rehash: Callable[[Sequence[Any]], tuple[str, str | None]]
    #: Whether the row stores its own hash (its last column); else the hash is computed.
    stores_hash: bool
    #: Columns holding a UUID and a timestamp: selected as text on PostgreSQL (canonical UUID
    #: text, UTC time without zone), which the hashers read without parsing.
    uuids: frozenset[str] = frozenset()
    times: frozenset[str] = frozenset()
    #: Other columns selected as text on PostgreSQL (JSON read as its text by the hashers of
    #: :mod:`ml_audit.decision_hashes`, whatever the driver's JSON loader does).
    texts: frozenset[str] = frozenset()

    def expressions(self, vendor: str) -> list[str]:
        if vendor != "postgresql":
            return list(self.columns)
        return [
            f"{column}::text"
            if column in self.uuids or column in self.texts
            else f"({column} AT TIME ZONE 'UTC')::text"
            if column in self.times
            else column
            for column in self.columns
        ]

    def select(self, vendor: str, extra: str = "") -> str:
        columns = ", ".join(self.expressions(vendor))
        return f"SELECT {columns}{extra} FROM {self.table} {self.alias} {self.joins}"


PREDICTION = SealedTable(
    kind=1,
    name="prediction",
    table="ml_audit_predictionevent",
    alias="p",
    recorded="p.timestamp",
    recorded_index=2,
    columns=PREDICTION_COLUMNS,
    joins=(
        "LEFT JOIN ml_audit_modelversion mv ON mv.id = p.model_id "
        "LEFT JOIN ml_audit_requestingactor a ON a.id = p.actor_id"
    ),
    rehash=prediction_hash,
    stores_hash=True,
    uuids=frozenset({"p.id"}),
    times=frozenset({"p.timestamp"}),
)
EXPLANATION = SealedTable(
    kind=2,
    name="explanation",
    table="ml_audit_explanation",
    alias="e",
    recorded="e.created_at",
    recorded_index=9,
    columns=EXPLANATION_COLUMNS,
    joins="",
    rehash=explanation_hash,
    stores_hash=True,
    uuids=frozenset({"e.id", "e.prediction_id"}),
    times=frozenset({"e.generated_at", "e.created_at"}),
)
ACCESS = SealedTable(
    kind=3,
    name="access",
    table="ml_audit_accesslog",
    alias="l",
    recorded="l.accessed_at",
    recorded_index=1,
    columns=ACCESS_COLUMNS,
    joins="",
    rehash=access_hash,
    stores_hash=False,
    uuids=frozenset({"l.id"}),
    times=frozenset({"l.accessed_at"}),
)

PURGE = SealedTable(
    kind=4,
    name="purge",
    table="ml_audit_purgerecord",
    alias="r",
    recorded="r.purged_at",
    recorded_index=3,
    columns=PURGE_COLUMNS,
    joins="",
    rehash=purge_hash,
    stores_hash=False,
    uuids=frozenset({"r.id", "r.run_id"}),
    times=frozenset({"r.purged_at", "r.time_from", "r.time_to"}),
)
HOLD = SealedTable(
    kind=5,
    name="hold",
    table="ml_audit_legalhold",
    alias="h",
    recorded="h.created_at",
    recorded_index=13,
    columns=HOLD_COLUMNS,
    joins="",
    rehash=hold_hash,
    stores_hash=False,
    uuids=frozenset({"h.id", "h.releases_id"}),
    times=frozenset({"h.time_from", "h.time_to", "h.created_at"}),
)


def _decision(table: decision_hashes.DecisionTable) -> SealedTable:
    """The sealed table of a :class:`~ml_audit.decision_hashes.DecisionTable`: the same kind,
    name, columns, expressions and hasher (so a sealed hash and a purge's tombstone agree)."""
    return SealedTable(
        kind=table.kind,
        name=table.name,
        table=table.table,
        alias=table.alias,
        recorded=table.recorded,
        recorded_index=table.recorded_index,
        columns=table.columns,
        joins="",
        rehash=table.rehash,
        stores_hash=False,
        uuids=table.uuids,
        times=table.times,
        texts=table.json_columns,
    )


REVIEW = _decision(decision_hashes.REVIEW)
OUTCOME = _decision(decision_hashes.OUTCOME)
REASON_CODES = _decision(decision_hashes.REASON_CODES)
ERASURE = SealedTable(
    kind=9,
    name="erasure",
    table="ml_audit_subjecterasure",
    alias="x",
    recorded="x.erased_at",
    recorded_index=4,
    columns=ERASURE_COLUMNS,
    joins="",
    rehash=erasure_hash,
    stores_hash=False,
    uuids=frozenset({"x.id"}),
    times=frozenset({"x.erased_at"}),
)

#: The audit rows: the verifier's row pass (``verifier.verify``) streams these.
TABLES: tuple[SealedTable, ...] = (PREDICTION, EXPLANATION, ACCESS)
#: The records beside them (retention records, reviews, outcomes, reason codes, subject
#: erasures): checked through a cursor by :mod:`ml_audit.sealing.purges`.
RECORD_TABLES: tuple[SealedTable, ...] = (PURGE, HOLD, REVIEW, OUTCOME, REASON_CODES, ERASURE)
#: Every sealed table, in kind order: what the sealer seals.
SEALED_TABLES: tuple[SealedTable, ...] = TABLES + RECORD_TABLES
BY_KIND = {table.kind: table for table in SEALED_TABLES}
