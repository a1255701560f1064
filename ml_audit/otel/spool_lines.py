"""The spool's line format, and how a line is read back: as untrusted input.

A spool line is ``json.dumps(record.to_dict())`` of a redacted :class:`PredictionRecord`, plus
a ``"_using"`` key when the record was meant for an explicit database alias and a
``"_latency_ms"`` key when the latency is to be set on it (the journal writes the record when
its span ends, before the writer thread sets the span's duration on it); or a spooled
explanation (:class:`SpooledExplanation`, ``"schema": "ml_audit.spooled_explanation/1"``).

:func:`decode_line` trusts nothing in a line. It is read back as a live record is checked:

1. at most :data:`MAX_LINE_BYTES` bytes, nested at most :data:`MAX_LINE_DEPTH` levels (counted
   on the bytes before any parsing, so no parser ever recurses deeper);
2. a prediction is rebuilt from exactly the fields ``to_dict`` writes and checked as
   :func:`ml_audit.records.revalidated` checks a span's attributes (as
   :meth:`PredictionRecord.create` checks a recording call: types, lengths, ids, a trace id of
   32 hex digits, an aware timestamp, JSON payloads...);
3. its payloads are redacted again with the redaction policy in force and the payloads
   ``ML_AUDIT['REDACT_PAYLOADS']`` names, as the live path redacts (:func:`reredact`); an
   explanation as ``attach_explanation`` redacts it.

Redacting again changes nothing in a line our own writer wrote under the same (or a laxer)
policy: a masked value stays the mask, a pseudonym stays the same pseudonym (hashing it again
would change it, so a value that already is one is kept), and a string whose detector hits
were replaced has none left. Such a record keeps its redaction description, so it is stored
with the content hash it would have had. A line that needs more redaction (raw personal data,
or a stricter policy since) is stored redacted by the current policy, and says so in its
``redaction`` (the current policy's version, the paths of both redactions).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from ml_audit.exceptions import InvalidRecord
from ml_audit.records import (
    MAX_DEPTH,
    MAX_PREDICTION_ID,
    RECORD_SCHEMA,
    ActorPayload,
    ExplanationRecord,
    PredictionRecord,
    revalidated,
)
from ml_audit.redaction import RedactionPolicy, redact

try:  # the ``fast`` extra
    import orjson

    _orjson_dumps: Any = orjson.dumps
    _APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson_dumps = None
    _APPEND_NEWLINE = 0

__all__ = [
    "EXPLANATION_LINE_SCHEMA",
    "MAX_LINE_BYTES",
    "MAX_LINE_DEPTH",
    "SpoolEntry",
    "SpooledExplanation",
    "decode_line",
    "encode_line",
    "reredact",
    "reredact_explanation",
]

#: The longest spool line read back, its newline included. A longer line is quarantined
#: without being read into memory. Records are far smaller: features, output and metadata are
#: what a model call carries; error messages and summaries have limits of their own.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: The deepest nesting of a spool line read back: a payload may nest :data:`MAX_DEPTH` levels
#: (``ml_audit.normalise``), and sits at most 2 levels into its line (``actor.auth_context``,
#: ``explanation.payload``). A deeper line is quarantined before it is parsed.
MAX_LINE_DEPTH = MAX_DEPTH + 4

USING_KEY = "_using"
LATENCY_KEY = "_latency_ms"

#: The ``"schema"`` of a spooled explanation's line.
EXPLANATION_LINE_SCHEMA = "ml_audit.spooled_explanation/1"


@dataclasses.dataclass(frozen=True)
class SpooledExplanation:
    """An explanation that could not be written: the id of its prediction and the record as
    ``attach_explanation`` would store it (validated, and redacted as the settings say)."""

    prediction_id: str
    record: ExplanationRecord


#: A record or an explanation, and the database alias it was meant for (None: the default).
SpoolEntry = tuple[PredictionRecord | SpooledExplanation, str | None]

#: The keys of a prediction line (``PredictionRecord.to_dict``).
_RECORD_KEYS = frozenset(
    {
        "schema",
        "event_id",
        "prediction_id",
        "timestamp",
        "model_name",
        "model_version",
        "environment",
        "actor",
        "features",
        "output",
        "confidence",
        "decision_outcome",
        "status",
        "error_type",
        "error_message",
        "latency_ms",
        "metadata",
        "trace_id",
        "span_id",
        "parent_span_id",
        "correlation_id",
        "redaction",
    }
)
#: Keys a prediction line has only when set (``to_dict`` leaves them out otherwise, so lines
#: written before they existed still read back).
_OPTIONAL_RECORD_KEYS = frozenset({"subject_ref"})
_MAX_ALIAS = 255
#: Text fields a line must give as strings (``revalidated`` checks the content of the others).
_TEXT_FIELDS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "correlation_id",
    "decision_outcome",
    "error_type",
    "error_message",
)


def encode_line(
    record: PredictionRecord | SpooledExplanation,
    using: str | None = None,
    *,
    latency_ms: float | None = None,
) -> bytes:
    """One spool line (with its newline) for a redacted record or a spooled explanation;
    ``latency_ms`` (predictions only) is stored as ``"_latency_ms"``, set on the record when
    it is read back."""
    data: dict[str, Any]
    if isinstance(record, SpooledExplanation):
        if latency_ms is not None:
            raise ValueError("a spooled explanation has no latency")
        data = {
            "schema": EXPLANATION_LINE_SCHEMA,
            "prediction_id": record.prediction_id,
            "explanation": record.record.to_dict(),
        }
    elif not record.is_redacted:
        raise ValueError(f"record {record.prediction_id!r} was not redacted; it may not be spooled")
    else:
        # With orjson (the ``fast`` extra) the id and timestamp are written by the encoder:
        # this runs on the request thread for every record in journal mode.
        data = record.to_dict(native=_orjson_dumps is not None)
        if latency_ms is not None:
            data[LATENCY_KEY] = latency_ms
    if using is not None:
        data[USING_KEY] = using
    if _orjson_dumps is not None and not isinstance(record, SpooledExplanation):
        try:
            line: bytes = _orjson_dumps(data, option=_APPEND_NEWLINE)
            return line
        except TypeError:  # e.g. an integer beyond 64 bits: the standard encoder takes it
            timestamp = data["timestamp"].isoformat(timespec="microseconds")
            data.update(event_id=str(record.event_id), timestamp=timestamp)
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode_line(
    line: bytes,
    *,
    policy: RedactionPolicy | None = None,
    payloads: frozenset[str] | None = None,
) -> SpoolEntry:
    """The record (and alias) of one spool line, validated and redacted again as a live record
    (see the module docstring); ``ValueError`` saying why when it cannot be read back.

    ``policy`` and ``payloads``: the redaction to apply (default: the settings',
    ``audit_settings.redaction_policy`` and ``REDACT_PAYLOADS``).
    """
    if policy is None or payloads is None:
        from ml_audit.conf import audit_settings

        policy = audit_settings.redaction_policy if policy is None else policy
        payloads = audit_settings.REDACT_PAYLOADS if payloads is None else payloads
    if not line.endswith(b"\n"):
        raise ValueError("line is not terminated (torn write)")
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"line is longer than {MAX_LINE_BYTES} bytes")
    check_depth(line, MAX_LINE_DEPTH)
    try:
        data = json.loads(line, parse_constant=_no_constant)
    except RecursionError:  # pragma: no cover - check_depth bounds the nesting first
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    using = data.pop(USING_KEY, None)
    if using is not None and (not isinstance(using, str) or not using or len(using) > _MAX_ALIAS):
        raise ValueError(f"{USING_KEY} is not a database alias")
    has_latency = LATENCY_KEY in data
    latency = data.pop(LATENCY_KEY, None)
    try:
        if data.get("schema") == EXPLANATION_LINE_SCHEMA:
            if has_latency:
                raise ValueError(f"a spooled explanation has no {LATENCY_KEY}")
            return _decode_explanation(data, policy, payloads), using
        record = _decode_record(data, latency if has_latency else None, has_latency)
        return reredact(record, policy, payloads), using
    except RecursionError:  # pragma: no cover - check_depth bounds the nesting first
        raise ValueError("nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def check_depth(line: bytes, limit: int) -> None:
    """``ValueError`` when the JSON text ``line`` nests arrays and objects more than ``limit``
    levels deep (brackets inside strings do not count). Linear, never recursive."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', line)):
        if match[0] in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise ValueError(f"nested more than {limit} levels deep")
        else:
            depth -= 1


def _decode_record(data: dict[str, Any], latency: Any, has_latency: bool) -> PredictionRecord:
    keys = set(data)
    if keys != _RECORD_KEYS and not (_RECORD_KEYS < keys <= _RECORD_KEYS | _OPTIONAL_RECORD_KEYS):
        missing = sorted(_RECORD_KEYS - keys)
        unexpected = sorted(keys - _RECORD_KEYS - _OPTIONAL_RECORD_KEYS)
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(unexpected)}" if unexpected else "",
            )
            if part
        )
        raise ValueError(f"not a prediction record ({detail})")
    if type(data["schema"]) is not int or data["schema"] != RECORD_SCHEMA:
        raise ValueError(f"not a prediction record (schema {data['schema']!r})")
    try:
        record = _rebuild(data)
        if has_latency:
            if isinstance(latency, bool) or not isinstance(latency, int | float):
                raise InvalidRecord(LATENCY_KEY, f"must be a number, not {type(latency).__name__}")
            record = record.evolve(latency_ms=latency)
        return revalidated(record)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise ValueError(f"not a valid prediction record ({type(exc).__name__}: {exc})") from None


def _rebuild(data: dict[str, Any]) -> PredictionRecord:
    """The record a line describes, its fields as given (checked by ``revalidated`` next)."""
    fields = dict(data)
    del fields["schema"]
    timestamp, event_id, actor = fields.pop("timestamp"), fields.pop("event_id"), fields["actor"]
    if not isinstance(timestamp, str):
        raise InvalidRecord("timestamp", "must be an ISO 8601 string")
    when = dt.datetime.fromisoformat(timestamp)
    if when.tzinfo is None or when.tzinfo.utcoffset(when) is None:
        raise InvalidRecord("timestamp", "has no time zone")
    if not isinstance(event_id, str):
        raise InvalidRecord("event_id", "must be a UUID string")
    if actor is not None and not isinstance(actor, Mapping):
        raise InvalidRecord("actor", f"must be an object or null, not {type(actor).__name__}")
    for name in _TEXT_FIELDS:  # revalidated checks their content, where they are not empty
        if not isinstance(fields[name], str):
            raise InvalidRecord(name, f"must be a string, not {type(fields[name]).__name__}")
    if not isinstance(fields.get("subject_ref", ""), str):
        raise InvalidRecord("subject_ref", "must be a string")
    fields["timestamp"] = when.astimezone(dt.UTC)
    fields["event_id"] = uuid.UUID(event_id)
    fields["actor"] = ActorPayload.coerce(actor)
    return PredictionRecord(**fields)


def _decode_explanation(
    data: dict[str, Any], policy: RedactionPolicy, payloads: frozenset[str]
) -> SpooledExplanation:
    prediction_id, explanation = data.get("prediction_id"), data.get("explanation")
    if set(data) != {"schema", "prediction_id", "explanation"}:
        raise ValueError("not a spooled explanation (unexpected keys)")
    if not isinstance(prediction_id, str) or not prediction_id.strip():
        raise ValueError("spooled explanation without a prediction id")
    if len(prediction_id) > MAX_PREDICTION_ID:
        raise ValueError("spooled explanation's prediction id is too long")
    if not isinstance(explanation, dict):
        raise ValueError("spooled explanation without its explanation")
    try:
        record = ExplanationRecord.from_dict(explanation)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise ValueError(f"not an explanation record ({type(exc).__name__}: {exc})") from None
    record = reredact_explanation(record, policy, keys="explanation" in payloads)
    return SpooledExplanation(prediction_id, record)


# ---------------------------------------------------------------------------------- redaction

_PSEUDONYM = r"hmac-sha256:[0-9a-f]{32}"  # ml_audit.redaction's hash-mode replacement
_PSEUDONYM_RE = re.compile(_PSEUDONYM)


def _token_pattern(policy: RedactionPolicy) -> re.Pattern[str] | None:
    """What a redacted value is replaced with under ``policy`` (None: values are dropped)."""
    if policy.mode == "mask":
        return re.compile(re.escape(policy.mask_value))
    if policy.mode == "hash":
        return _PSEUDONYM_RE
    return None


class _Settler:
    """Keeps what an earlier redaction already replaced (see :func:`reredact`)."""

    def __init__(self, policy: RedactionPolicy) -> None:
        self.policy = policy
        self.tokens = _token_pattern(policy)

    def is_token(self, value: str) -> bool:
        return self.tokens is not None and self.tokens.fullmatch(value) is not None

    def clean_apart_from_tokens(self, value: str) -> bool:
        """Whether no detector finds anything in ``value`` outside earlier replacements."""
        pieces = [value] if self.tokens is None else self.tokens.split(value)
        return all(not piece or not redact(piece, self.policy).paths for piece in pieces)

    def settle(self, old: Any, new: Any) -> Any:
        """``new`` (``old`` redacted again), except where ``old`` already was redacted: there
        ``old``. Returns ``old`` itself when nothing changes."""
        if new is old:
            return old
        if type(old) is str:
            if type(new) is not str:
                return new
            if self.is_token(new):  # the whole value replaced (a sensitive key, or all of it hit)
                return old if self.is_token(old) else new
            # Detector hits inside the string: none left outside earlier replacements?
            return old if self.clean_apart_from_tokens(old) else new
        if type(old) is dict and type(new) is dict:
            settled: dict[Any, Any] = {}
            kept = len(new) == len(old)
            for key, value in new.items():
                if key in old:
                    item = self.settle(old[key], value)
                    kept = kept and item is old[key]
                else:  # pragma: no cover - redaction only removes keys
                    item, kept = value, False
                settled[key] = item
            return old if kept else settled
        if type(old) is list and type(new) is list and len(old) == len(new):
            items = [self.settle(o, n) for o, n in zip(old, new, strict=True)]
            return old if all(i is o for i, o in zip(items, old, strict=True)) else items
        if type(old) is type(new) and old == new:
            return old
        return new


def reredact(
    record: PredictionRecord, policy: RedactionPolicy, payloads: frozenset[str]
) -> PredictionRecord:
    """``record`` (which says it was redacted, and was validated) redacted again by ``policy``
    and ``payloads`` as the live path redacts an unredacted record: the record itself when that
    changes nothing, else the more redacted record, described as redacted by ``policy`` (see
    the module docstring)."""
    fresh = record.evolve(redaction=None).redact(policy, payloads)
    settler = _Settler(policy)
    features = settler.settle(record.features, fresh.features)
    output = settler.settle(record.output, fresh.output)
    metadata = settler.settle(record.metadata, fresh.metadata)
    error_message = settler.settle(record.error_message, fresh.error_message)
    error_type = settler.settle(record.error_type, fresh.error_type)
    actor = record.actor
    auth_context: Any = None
    if actor is not None and fresh.actor is not None:
        auth_context = settler.settle(actor.auth_context, fresh.actor.auth_context)
    if (
        features is record.features
        and output is record.output
        and metadata is record.metadata
        and error_message is record.error_message
        and error_type is record.error_type
        and (actor is None or auth_context is actor.auth_context)
    ):
        return record
    old_paths: dict[str, list[str]] = (record.redaction or {}).get("paths", {})
    new_paths: dict[str, list[str]] = (fresh.redaction or {}).get("paths", {})
    paths = {
        field: sorted({*old_paths.get(field, ()), *new_paths.get(field, ())})
        for field in sorted({*old_paths, *new_paths})
    }
    changes: dict[str, Any] = {
        "features": features,
        "output": output,
        "metadata": metadata,
        "error_message": error_message,
        "error_type": error_type,
        "redaction": {"policy": policy.version, "paths": paths},
    }
    if actor is not None and auth_context is not actor.auth_context:
        changes["actor"] = dataclasses.replace(actor, auth_context=auth_context)
    return fresh.evolve(**changes)


def reredact_explanation(
    record: ExplanationRecord, policy: RedactionPolicy, *, keys: bool = True
) -> ExplanationRecord:
    """A validated explanation redacted by ``policy`` as ``attach_explanation`` redacts one
    (``keys``: also by the key rules, when ``REDACT_PAYLOADS`` names "explanation"), keeping
    what an earlier redaction already replaced (the record itself when nothing changes)."""
    fresh = record.redact(policy, keys=keys)
    settler = _Settler(policy)
    payload = settler.settle(record.payload, fresh.payload)
    summary = settler.settle(record.summary_text, fresh.summary_text)
    if payload is record.payload and summary is record.summary_text:
        return record
    return dataclasses.replace(record, payload=payload, summary_text=summary)
