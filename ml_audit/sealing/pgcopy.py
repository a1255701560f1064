"""PostgreSQL's side of the verifier: rows read with ``COPY (SELECT ...) TO STDOUT`` and hashed
by fast paths that decline anything they cannot vouch for.

``COPY`` streams a query's rows as text lines while PostgreSQL keeps producing them, so the
database and this process work at the same time (a server-side cursor's ``FETCH`` lets one wait
for the other). A line is split on tabs; a field holding a backslash is a NULL (``\\N``) or an
escaped character and is decoded by :func:`decode_line`. Columns are selected as text, as the
generic path selects them (:meth:`~ml_audit.sealing.tables.SealedTable.expressions`), and
:func:`generic_row` turns a line into exactly the tuple a cursor would have returned (tested).

:func:`prediction_fast` / :func:`explanation_fast` recompute a row's hash from the line's texts
with orjson; they return ``None`` (the caller then uses the generic hasher of
:mod:`ml_audit.sealing.tables` on :func:`generic_row`) whenever the canonical text could differ
from :func:`ml_audit.canonical.canonical_json`'s:

* a JSON text containing ``e-``, ``E-`` or ``0.0000`` (a float below 1e-4 in magnitude, which
  orjson writes differently; PostgreSQL's jsonb writes numbers without exponent);
* a canonical text containing ``e+``: orjson reads an integer beyond 64 bits as a float, and a
  float that large is always written with an exponent (so are floats >= 1e16, which only cost
  the fast path);
* a non-finite or below-1e-4 float column, a JSON column of an unexpected type, a registry id
  not read, a value orjson refuses.

The prediction registry (model versions, actors: few rows) is read once per verification in the
same snapshot and each entry's canonical value built once (:func:`read_registry`).
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from ml_audit.canonical import RECORD_SCHEMA

_COMMAND_OK: Any
try:
    from psycopg.pq import ExecStatus

    _COMMAND_OK = ExecStatus.COMMAND_OK
except ImportError:  # pragma: no cover - psycopg 2 or none: the cursor path is used
    _COMMAND_OK = None


def _copy_error(result: Any, encoding: str) -> Exception:
    """The psycopg exception for the result of a ``COPY`` that failed."""
    from psycopg.errors import error_from_result

    return error_from_result(result, encoding=encoding)


__all__ = [
    "FAST_HASHERS",
    "PREDICTION_EXPRESSIONS",
    "Registry",
    "copy_lines",
    "decode_line",
    "explanation_fast",
    "generic_row",
    "prediction_fast",
    "prediction_generic",
    "read_registry",
]

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # the ``fast`` extra is absent: the fast hashers decline every line
    _orjson = None

#: Whether the fast hashers can answer (orjson installed); without them every line is hashed by
#: the generic hasher of :mod:`ml_audit.sealing.tables`, with the same result, more slowly.
FAST_HASHERS = _orjson is not None

_sha256 = hashlib.sha256
if _orjson is not None:
    _loads = _orjson.loads
    _dumps = _orjson.dumps
    _SORT = _orjson.OPT_SORT_KEYS
    _JSON_ERROR: type[Exception] = _orjson.JSONDecodeError
else:  # pragma: no cover - exercised where orjson is absent (tests reload the module)
    _JSON_ERROR = ValueError
_isfinite = math.isfinite

#: Lines joined and decoded at once.
BATCH = 2000


def copy_lines(cursor: Any, sql: str, params: Sequence[Any] | None = None) -> Iterator[list[str]]:
    """The lines (without their newline) of ``COPY (sql) TO STDOUT``, in batches.

    ``cursor`` is a psycopg 3 cursor (which binds ``params`` client-side: ``COPY`` takes no
    parameters). PostgreSQL sends each row as one message ending in its newline: the messages
    are read straight from libpq (``PGconn.get_copy_data``, blocking) rather than through
    psycopg's ``Copy.read``, whose generator and wait machinery cost more per row than the row's
    hash, and each is decoded on its own (a message that is not exactly one line is split or
    joined as the newlines say). psycopg's ``Copy`` still starts the operation and, should this
    generator be left early or fail, cancels it.
    """
    with cursor.copy(f"COPY ({sql}) TO STDOUT", params or None):
        pgconn = cursor.connection.pgconn
        get = pgconn.get_copy_data
        lines: list[str] = []
        append = lines.append
        carry = b""
        while True:
            size, data = get(0)
            if size < 0:
                break
            if data[-1] == 10 and not carry:
                line = str(data[:-1], "utf-8")
                if "\n" in line:  # several rows in one message
                    lines.extend(line.split("\n"))
                else:
                    append(line)
            else:  # part of a row: wait for its newline
                carry += data
                if carry.endswith(b"\n"):
                    lines.extend(carry[:-1].decode("utf-8").split("\n"))
                    carry = b""
            if len(lines) >= BATCH:
                yield lines
                lines = []
                append = lines.append
        # The copy is over (-1): its command result, or the error that ended it.
        results = []
        while (result := pgconn.get_result()) is not None:
            results.append(result)
        for result in results:
            if result.status != _COMMAND_OK:
                raise _copy_error(result, cursor.connection.info.encoding)
        if carry:
            lines.extend(carry.decode("utf-8").split("\n"))
        if lines:
            yield lines


_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)", re.DOTALL)


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] == "x" and len(code) > 1:
        return chr(int(code[1:], 16))
    if code[0] in "01234567":
        return chr(int(code, 8))
    return _ESCAPES.get(code, code)


def decode_line(line: str) -> list[str | None]:
    """A ``COPY`` text line's fields: ``\\N`` is NULL, backslash sequences are decoded."""
    return [
        None if field == "\\N" else _ESCAPE.sub(_unescape, field) if "\\" in field else field
        for field in line.split("\t")
    ]


def generic_row(
    fields: Sequence[str | None], ints: Sequence[int], floats: Sequence[int]
) -> list[Any]:
    """``fields`` with the integer and float columns converted: what a cursor returns."""
    row: list[Any] = list(fields)
    for index in ints:
        if row[index] is not None:
            row[index] = int(row[index])
    for index in floats:
        if row[index] is not None:
            row[index] = float(row[index])
    return row


# ----------------------------------------------------------------------------- the registry

#: ``(models, actors)``: model version id text -> ``(name, version, canonical value)``; actor id
#: text -> ``(actor_type, actor_id, tenant_id, canonical value, tenant)``.
Registry = tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]]


def read_registry(cursor: Any) -> Registry:
    """Every model version and actor (a few rows), with the values their predictions hash."""
    models: dict[str, tuple[Any, ...]] = {}
    cursor.execute("SELECT id::text, model_name, version FROM ml_audit_modelversion")
    for row_id, name, version in cursor.fetchall():
        models[row_id] = (name, version, {"name": name, "version": version})
    actors: dict[str, tuple[Any, ...]] = {}
    cursor.execute("SELECT id::text, actor_type, actor_id, tenant_id FROM ml_audit_requestingactor")
    for row_id, actor_type, actor_id, tenant_id in cursor.fetchall():
        tenant = tenant_id or ""
        value = {"type": actor_type, "id": actor_id, "tenant": tenant}
        actors[row_id] = (actor_type, actor_id, tenant_id, value, tenant)
    return models, actors


# ----------------------------------------------------------------------------- predictions

#: What the row pass selects of a prediction: the registry ids instead of a join (the registry
#: is read once, :func:`read_registry`), then the member's seal id and hash.
PREDICTION_EXPRESSIONS = (
    "p.id::text",
    "p.prediction_id",
    "(p.timestamp AT TIME ZONE 'UTC')::text",
    "p.model_id::text",
    "p.actor_id::text",
    "p.environment",
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
    "m.seal_id",
    "m.row_hash",
)


def prediction_generic(f: Sequence[Any], registry: Registry) -> list[Any]:
    """A line of :data:`PREDICTION_EXPRESSIONS` as the generic path's row: the columns of
    ``tables.PREDICTION_COLUMNS`` (registry columns ``None`` where the join finds no row), then
    seal id and sealed hash."""
    model = registry[0].get(f[3])
    actor = registry[1].get(f[4]) if f[4] is not None else None
    name, version = (model[0], model[1]) if model is not None else (None, None)
    actor_type, actor_id, tenant = actor[:3] if actor is not None else (None, None, None)
    confidence, latency, seal_id = f[14], f[19], f[27]
    return [
        *f[0:3],
        name,
        version,
        f[5],
        actor_type,
        actor_id,
        tenant,
        *f[6:14],
        None if confidence is None else float(confidence),
        *f[15:19],
        None if latency is None else float(latency),
        *f[20:27],
        None if seal_id is None else int(seal_id),
        f[28],
    ]


# ----------------------------------------------------------------------------- fast hashers

#: Parsed JSON texts that repeat from row to row (request context, redaction, metadata),
#: bounded; orjson never changes a value it writes, so sharing them is safe. Only texts that
#: passed :func:`_plain_text` are kept, so a text found here needs no scanning again.
_CACHE_LIMIT = 4096
_MAX_FLOAT = sys.float_info.max


def _plain_text(text: str) -> bool:
    """Whether orjson reads and writes the JSON ``text`` as the standard encoder would, as far
    as its text tells (no exponent, no float below 1e-4; see the module docstring)."""
    return "e-" not in text and "E-" not in text and "0.0000" not in text


def _json(text: str | None, cache: dict[str, Any]) -> Any:
    """The value of a JSON text that may repeat (cached); raises :class:`_Decline` for a text
    that fails :func:`_plain_text`."""
    if text is None:
        return None
    value = cache.get(text)
    if value is None:
        if not _plain_text(text):
            raise _Decline
        value = _loads(text)
        if len(cache) < _CACHE_LIMIT:
            cache[text] = value
    return value


class _Decline(Exception):
    """A value the fast path cannot vouch for."""


def _iso(text: str) -> str | None:
    """``YYYY-MM-DD HH:MM:SS[.f]`` (UTC) as the records write it, or ``None`` (as
    ``tables._iso`` reads it)."""
    size = len(text)
    if size < 19 or text[10] != " " or text[4] != "-":
        return None
    if size == 19:
        return f"{text[:10]}T{text[11:]}.000000+00:00"
    if text[19] == "." and size <= 26 and text[20:].isdigit():
        return f"{text[:10]}T{text[11:19]}.{text[20:].ljust(6, '0')}+00:00"
    return None


def _float(text: str | None) -> float | bool | None:
    """A float column's value, or ``False`` where orjson would write it differently."""
    if text is None:
        return None
    value = float(text)
    if not _isfinite(value) or (value != 0 and -1e-4 < value < 1e-4):
        return False
    return value


def prediction_fast(
    f: Sequence[Any], registry: Registry, cache: dict[str, Any]
) -> tuple[str, str | None] | None:
    """``(content hash, problem)`` of a prediction line's fields (:data:`PG_PREDICTION` order),
    as :func:`ml_audit.sealing.tables.prediction_hash` computes it, or ``None`` to use it.

    Written for speed (it runs for every prediction): the checks of :func:`_float` and
    :func:`_iso` inlined for the common case, the repeating JSON texts scanned once (when they
    enter the cache), the canonical text searched for ``e+`` only when it holds a ``+`` besides
    the timestamp's."""
    model = registry[0].get(f[3])
    if model is None or not FAST_HASHERS:
        return None
    features, output = f[10], f[13]
    if features is None:
        return None
    texts = features if output is None else features + output
    if "e-" in texts or "E-" in texts or "0.0000" in texts:
        return None
    confidence, latency, timestamp = f[14], f[19], f[2]
    if confidence is not None:
        confidence = float(confidence)
        # Declines NaN and infinities too (their comparisons are false).
        if confidence != 0 and not 1e-4 <= abs(confidence) <= _MAX_FLOAT:
            return None
    if latency is not None:
        latency = float(latency)
        if latency != 0 and not 1e-4 <= abs(latency) <= _MAX_FLOAT:
            return None
    if (
        len(timestamp) == 26
        and timestamp[19] == "."
        and timestamp[10] == " "
        and timestamp[4] == "-"
        and timestamp[20:].isdigit()
    ):
        timestamp = f"{timestamp[:10]}T{timestamp[11:]}+00:00"
    else:
        timestamp = _iso(timestamp)
        if timestamp is None:
            return None
    get = cache.get
    try:
        auth_text = f[9]
        auth = get(auth_text)
        if auth is None:
            auth = _json(auth_text, cache)
        if auth is not None and type(auth) is not dict:
            return None
        redaction = f[11]
        redaction_value = get(redaction)
        if redaction_value is None:
            redaction_value = _json(redaction, cache)
        metadata = f[20]
        metadata_value = get(metadata)
        if metadata_value is None:
            metadata_value = _json(metadata, cache)
        problem = None
        actor_key = f[4]
        client_ip, user_agent = f[7], f[8]
        if actor_key is None:
            actor_value = None
            tenant = ""
            if client_ip is not None or user_agent or auth:
                problem = "request context on a prediction without an actor"
            client_ip, user_agent, auth = None, "", {}
        else:
            actor = registry[1].get(actor_key)
            if actor is None:
                return None
            actor_value, tenant = actor[3], actor[4]
            user_agent = user_agent or ""
            if auth is None:
                auth = {}
        if f[6] != tenant:
            problem = "tenant_id differs from the actor's tenant"
        fields = {
            "schema": RECORD_SCHEMA,
            "id": f[0],
            "prediction_id": f[1],
            "timestamp": timestamp,
            "model": model[2],
            "environment": f[5],
            "actor": actor_value,
            "tenant_id": tenant,
            "client_ip": client_ip,
            "user_agent": user_agent,
            "auth_context": auth,
            "features": _loads(features),
            "redaction": redaction_value,
            "input_fingerprint": f[12],
            "output": None if output is None else _loads(output),
            "confidence": confidence,
            "decision_outcome": f[15],
            "status": f[16],
            "error_type": f[17],
            "error_message": f[18],
            "latency_ms": latency,
            "metadata": metadata_value,
            "trace_id": f[21],
            "span_id": f[22],
            "parent_span_id": f[23],
            "correlation_id": f[24],
        }
        if f[25]:  # the subject reference, as PredictionRecord.stored_fields: only when set
            fields["subject_ref"] = f[25]
        canonical = _dumps(fields, option=_SORT)
    except (_JSON_ERROR, TypeError, _Decline):
        return None
    # The timestamp holds one "+": any other may be an exponent orjson wrote (e.g. an integer
    # beyond 64 bits, which it reads as a float).
    if canonical.find(b"+") != canonical.rfind(b"+") and b"e+" in canonical:
        return None
    return _sha256(canonical).hexdigest(), problem


def explanation_fast(f: Sequence[Any]) -> tuple[str, None] | None:
    """The content hash of an explanation line's fields (``EXPLANATION_COLUMNS`` order), as
    :func:`ml_audit.sealing.tables.explanation_hash` computes it, or ``None`` to use it."""
    payload = f[5]
    if not FAST_HASHERS or payload is None or not _plain_text(payload):
        return None
    generated_at, created_at = _iso(f[8]), _iso(f[9])
    if generated_at is None or created_at is None:
        return None
    try:
        canonical = _dumps(
            {
                "schema": RECORD_SCHEMA,
                "id": f[0],
                "prediction": f[1],
                "revision": int(f[2]),
                "method": f[3],
                "method_version": f[4],
                "payload": _loads(payload),
                "summary_text": f[6],
                "status": f[7],
                "generated_at": generated_at,
                "created_at": created_at,
            },
            option=_SORT,
        )
    except (_JSON_ERROR, TypeError):
        return None
    if b"e+" in canonical:
        return None
    return _sha256(canonical).hexdigest(), None
