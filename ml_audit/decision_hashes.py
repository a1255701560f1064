"""The row hashes of the human side of a decision: reviews, outcomes and reason codes.

These rows store no hash of their own (unlike predictions and explanations, whose
``content_hash`` the writer computes). Their hash is computed from their columns when it is
needed: SHA-256 of the canonical JSON (:func:`ml_audit.canonical.canonical_json`) of every
column, with ``"table"`` and the record schema version, as the access log's is
(:func:`ml_audit.sealing.tables.access_fields`):

=====  ==============  ======================  ===============================================
kind   name            table                   hash of
=====  ==============  ======================  ===============================================
6      review          ``ml_audit_review``     :func:`review_fields`
7      outcome         ``ml_audit_outcome``    :func:`outcome_fields`
8      reason_codes    ``ml_audit_reasoncodes``  :func:`reason_codes_fields`
=====  ==============  ======================  ===============================================

A retention purge records each removed row's hash in its tombstone (``PurgedRow``, with the
kind above) and counts the rows under the name above. The sealer seals these tables with the
same hashes: :mod:`ml_audit.sealing.tables` makes a
:class:`~ml_audit.sealing.tables.SealedTable` of each :class:`DecisionTable` (its columns,
which of them are UUIDs, times and JSON, its ``rehash`` returning ``(hash, problem)``), so that
a sealed row's hash and its tombstone's agree and a purged review is not a deleted one.

The hashers read raw column values as a database cursor returns them for
:meth:`DecisionTable.select` (SQLite: UUIDs as 32 hex digits, times as UTC text, JSON as text;
PostgreSQL: the ``::text`` forms that ``select`` asks for), and also aware datetimes and
``uuid.UUID`` objects. A JSON column's value must be its JSON text (or an already decoded
dict, list or ``None``): a decoded JSON string would be read as JSON text, so do not hand them
``values_list()`` results. This module imports no Django models (the sealer imports it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ml_audit.canonical import RECORD_SCHEMA, canonical_json

__all__ = [
    "DECISION_TABLES",
    "OUTCOME",
    "REASON_CODES",
    "REVIEW",
    "DecisionTable",
    "outcome_fields",
    "outcome_hash",
    "reason_codes_fields",
    "reason_codes_hash",
    "review_fields",
    "review_hash",
]


# ----------------------------------------------------------------------------- column decoding


def _uuid(value: Any) -> str | None:
    """A UUID column (``uuid.UUID``, PostgreSQL's canonical text, SQLite's 32 hex digits)."""
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    text = str(value)
    if len(text) == 36:
        return text.lower()
    return str(uuid.UUID(text))


def _iso(value: Any) -> str:
    """A timestamp column as ``2024-05-01T12:00:00.000000+00:00`` (UTC, microseconds), from an
    aware datetime or the UTC text a cursor returns (``YYYY-MM-DD HH:MM:SS[.f]``)."""
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    else:
        when = dt.datetime.fromisoformat(str(value))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _json(value: Any) -> Any:
    """A JSON column: its text decoded (a driver that already decoded it: as given)."""
    if isinstance(value, str | bytes | bytearray):
        return json.loads(value)
    return value


def _hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- reviews

REVIEW_COLUMNS = (
    "v.id",
    "v.prediction_id",
    "v.tenant_id",
    "v.action",
    "v.final_outcome",
    "v.reviewer_type",
    "v.reviewer_id",
    "v.reason",
    "v.comment",
    "v.redaction",
    "v.created_at",
    "v.trace_id",
    "v.span_id",
)


def review_fields(row: Sequence[Any]) -> dict[str, Any]:
    """The canonical content of a review row of :data:`REVIEW_COLUMNS`."""
    (
        row_id,
        prediction,
        tenant_id,
        action,
        final_outcome,
        reviewer_type,
        reviewer_id,
        reason,
        comment,
        redaction,
        created_at,
        trace_id,
        span_id,
    ) = row
    return {
        "schema": RECORD_SCHEMA,
        "table": "review",
        "id": _uuid(row_id),
        "prediction": _uuid(prediction),
        "tenant_id": tenant_id,
        "action": action,
        "final_outcome": final_outcome,
        "reviewer_type": reviewer_type,
        "reviewer_id": reviewer_id,
        "reason": reason,
        "comment": comment,
        "redaction": _json(redaction),
        "created_at": _iso(created_at),
        "trace_id": trace_id,
        "span_id": span_id,
    }


def review_hash(row: Sequence[Any]) -> tuple[str, str | None]:
    """``(hash, None)`` of a review row: SHA-256 of :func:`review_fields`' canonical JSON."""
    return _hash(review_fields(row)), None


# ----------------------------------------------------------------------------- outcomes

OUTCOME_COLUMNS = (
    "o.id",
    "o.prediction_id",
    "o.tenant_id",
    "o.value",
    "o.observed_at",
    "o.source",
    "o.recorded_at",
    "o.recorded_by",
    "o.idempotency_key",
)


def outcome_fields(row: Sequence[Any]) -> dict[str, Any]:
    """The canonical content of an outcome row of :data:`OUTCOME_COLUMNS`."""
    (
        row_id,
        prediction,
        tenant_id,
        value,
        observed_at,
        source,
        recorded_at,
        recorded_by,
        idempotency_key,
    ) = row
    return {
        "schema": RECORD_SCHEMA,
        "table": "outcome",
        "id": _uuid(row_id),
        "prediction": _uuid(prediction),
        "tenant_id": tenant_id,
        "value": _json(value),
        "observed_at": _iso(observed_at),
        "source": source,
        "recorded_at": _iso(recorded_at),
        "recorded_by": recorded_by,
        "idempotency_key": idempotency_key,
    }


def outcome_hash(row: Sequence[Any]) -> tuple[str, str | None]:
    """``(hash, None)`` of an outcome row: SHA-256 of :func:`outcome_fields`' canonical JSON."""
    return _hash(outcome_fields(row)), None


# ----------------------------------------------------------------------------- reason codes

REASON_CODES_COLUMNS = (
    "c.id",
    "c.explanation_id",
    "c.prediction_id",
    "c.codes",
    "c.created_at",
)


def reason_codes_fields(row: Sequence[Any]) -> dict[str, Any]:
    """The canonical content of a reason-codes row of :data:`REASON_CODES_COLUMNS`."""
    row_id, explanation, prediction, codes, created_at = row
    return {
        "schema": RECORD_SCHEMA,
        "table": "reasoncodes",
        "id": _uuid(row_id),
        "explanation": _uuid(explanation),
        "prediction": _uuid(prediction),
        "codes": _json(codes),
        "created_at": _iso(created_at),
    }


def reason_codes_hash(row: Sequence[Any]) -> tuple[str, str | None]:
    """``(hash, None)`` of a reason-codes row: SHA-256 of :func:`reason_codes_fields`'
    canonical JSON."""
    return _hash(reason_codes_fields(row)), None


# ----------------------------------------------------------------------------- the tables


@dataclass(frozen=True)
class DecisionTable:
    """One of these tables: its kind (as in ``SealMember`` and ``PurgedRow``), its name (in
    purge counts), its SQL and its row hasher."""

    kind: int
    name: str
    table: str
    alias: str
    #: Column of the time the row records, and its position in ``columns``.
    recorded: str
    recorded_index: int
    columns: tuple[str, ...]
    rehash: Callable[[Sequence[Any]], tuple[str, str | None]]
    #: Columns holding a UUID and a timestamp: selected as text on PostgreSQL.
    uuids: frozenset[str]
    times: frozenset[str]

    @property
    def json_columns(self) -> frozenset[str]:
        """The JSON columns, selected as text on PostgreSQL."""
        return frozenset(column for column in self.columns if column in _JSON_COLUMNS)

    def expressions(self, vendor: str) -> list[str]:
        if vendor != "postgresql":
            return list(self.columns)
        return [
            f"{column}::text"
            if column in self.uuids
            else f"({column} AT TIME ZONE 'UTC')::text"
            if column in self.times
            else f"{column}::text"
            if column in _JSON_COLUMNS
            else column
            for column in self.columns
        ]

    def select(self, vendor: str) -> str:
        """``SELECT <columns> FROM <table> <alias>`` (add the ``WHERE``)."""
        return f"SELECT {', '.join(self.expressions(vendor))} FROM {self.table} {self.alias}"


#: JSON columns, selected as text on PostgreSQL whatever the driver's JSON loader does.
_JSON_COLUMNS = frozenset({"v.redaction", "o.value", "c.codes"})

REVIEW = DecisionTable(
    kind=6,
    name="review",
    table="ml_audit_review",
    alias="v",
    recorded="v.created_at",
    recorded_index=10,
    columns=REVIEW_COLUMNS,
    rehash=review_hash,
    uuids=frozenset({"v.id", "v.prediction_id"}),
    times=frozenset({"v.created_at"}),
)
OUTCOME = DecisionTable(
    kind=7,
    name="outcome",
    table="ml_audit_outcome",
    alias="o",
    recorded="o.recorded_at",
    recorded_index=6,
    columns=OUTCOME_COLUMNS,
    rehash=outcome_hash,
    uuids=frozenset({"o.id", "o.prediction_id"}),
    times=frozenset({"o.observed_at", "o.recorded_at"}),
)
REASON_CODES = DecisionTable(
    kind=8,
    name="reason_codes",
    table="ml_audit_reasoncodes",
    alias="c",
    recorded="c.created_at",
    recorded_index=4,
    columns=REASON_CODES_COLUMNS,
    rehash=reason_codes_hash,
    uuids=frozenset({"c.id", "c.explanation_id", "c.prediction_id"}),
    times=frozenset({"c.created_at"}),
)

#: In kind order.
DECISION_TABLES: tuple[DecisionTable, ...] = (REVIEW, OUTCOME, REASON_CODES)
