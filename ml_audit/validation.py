"""Checks of the arguments of a recording call, and the limits they enforce.

Each check returns the normalised value or raises :class:`~ml_audit.exceptions.InvalidRecord`
naming the field. The limits are shared with :mod:`ml_audit.models`, so that validation and
the schema cannot disagree. :mod:`ml_audit.records` builds records with these checks.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Mapping
from typing import Any

from ml_audit.exceptions import InvalidRecord
from ml_audit.ids import is_w3c_trace_id
from ml_audit.normalise import _check_string, _flat_dict, to_json

__all__ = [
    "ACTOR_TYPES",
    "EXPLANATION_STATUSES",
    "PREDICTION_STATUSES",
    "split_trace_reference",
]

ACTOR_TYPES = ("user", "service", "api_key", "job", "other")
PREDICTION_STATUSES = ("success", "failed", "partial")

# Column limits, shared with ml_audit.models so validation and schema cannot disagree.
MAX_MODEL_NAME = 200
MAX_MODEL_VERSION = 100
MAX_ENVIRONMENT = 64
MAX_PREDICTION_ID = 255
MAX_DECISION_OUTCOME = 128
MAX_ACTOR_ID = 255
MAX_TENANT_ID = 255
MAX_CORRELATION_ID = 255
MAX_ERROR_TYPE = 255
MAX_ERROR_MESSAGE = 10_000
EXPLANATION_STATUSES = ("success", "failed", "partial", "pending")
MAX_EXPLANATION_METHOD = 64

_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
#: A subject reference (:mod:`ml_audit.subjects`): an HMAC-SHA-256 in lower-case hex.
_SUBJECT_REF = re.compile(r"[0-9a-f]{64}")


def split_trace_reference(value: str | None) -> tuple[str, str]:
    """Split the seed's ``trace_id`` argument into ``(w3c_trace_id, correlation_id)``.

    A W3C trace id (32 hex digits, not all zero) is returned lower-cased as the first item;
    anything else (an ``X-Request-ID``, a UUID with dashes) is the caller's correlation id.
    """
    if value is None:
        return "", ""
    if not isinstance(value, str):
        raise InvalidRecord("trace_id", f"must be a string, not {type(value).__name__}")
    text = value.strip()
    lowered = text.lower()
    if is_w3c_trace_id(lowered):
        return lowered, ""
    _check_text("trace_id", text, MAX_CORRELATION_ID, allow_empty=True)
    return "", text


def _check_text(
    field: str, value: Any, max_length: int, *, allow_empty: bool = False, strip: bool = True
) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(field, f"must be a string, not {type(value).__name__}")
    text = value.strip() if strip else value
    if not text and not allow_empty:
        raise InvalidRecord(field, "must not be empty")
    if len(text) > max_length:
        raise InvalidRecord(field, f"is {len(text)} characters long; the limit is {max_length}")
    return _check_string(field, text)


def _check_identifier(field: str, value: Any, max_length: int, *, optional: bool) -> str:
    """Identifiers may be given as ints for convenience (``user.pk``); stored as strings."""
    if value is None and optional:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return _check_text(field, value, max_length, allow_empty=optional)


def _check_unit_float(field: str, value: Any, *, upper: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or (
        not isinstance(value, int | float | decimal.Decimal)
        and not (type(value).__module__.startswith("numpy") and hasattr(value, "item"))
    ):
        raise InvalidRecord(field, f"must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRecord(field, "must be a finite number") from exc
    if not math.isfinite(number):
        raise InvalidRecord(field, f"must be a finite number, not {number!r}")
    if number < 0 or (upper is not None and number > upper):
        bounds = f"between 0 and {upper:g}" if upper is not None else "zero or more"
        raise InvalidRecord(field, f"must be {bounds}, not {number!r}")
    # -0.0 reads back as 0.0: SQLite's REAL drops the sign, and Django's client-side binding
    # sends it to PostgreSQL as the numeric literal -0.0, which is 0. Store what reads back.
    return number or 0.0


def _check_mapping(field: str, value: Any, *, optional: bool) -> dict[str, Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRecord(field, f"must be a mapping (dict), not {type(value).__name__}")
    result: dict[str, Any] = to_json(value, field)
    return result


def _check_timestamp(value: Any, naive_policy: str) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    if not isinstance(value, dt.datetime):
        raise InvalidRecord("timestamp", f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        if naive_policy == "utc":
            return value.replace(tzinfo=dt.UTC)
        raise InvalidRecord(
            "timestamp",
            "is a naive datetime; pass an aware one (e.g. django.utils.timezone.now()) or set "
            "ML_AUDIT['NAIVE_DATETIME_POLICY'] = 'utc'",
        )
    try:
        return value.astimezone(dt.UTC)
    except (OverflowError, ValueError):  # e.g. year 1 at UTC+14: before year 1 in UTC
        raise InvalidRecord(
            "timestamp", f"{value.isoformat()} is outside the dates that can be stored in UTC"
        ) from None


def _check_subject_ref(value: Any) -> str:
    """A record's ``subject_ref``: "" (no subject named) or 64 lower-case hex digits. Never an
    identifier: the span helpers turn ``subject=`` into a reference before a record exists."""
    if not isinstance(value, str):
        raise InvalidRecord("subject_ref", f"must be a string, not {type(value).__name__}")
    if value and _SUBJECT_REF.fullmatch(value) is None:
        raise InvalidRecord(
            "subject_ref",
            "must be a subject reference (64 lower-case hex digits, from ml_audit.subjects) "
            "or empty",
        )
    return value


def _check_hex(field: str, value: str, pattern: re.Pattern[str]) -> str:
    if value and not pattern.match(value):
        raise InvalidRecord(field, "must be lower-case hex of the W3C length")
    return value


def _outcome_fields(
    output: Any,
    confidence: Any,
    decision_outcome: Any,
    status: Any,
    error_type: Any,
    error_message: Any,
) -> dict[str, Any]:
    """The validated outcome of a prediction (shared by ``create`` and ``with_outcome``).

    Keys in field order; values checked in the order status, output, confidence,
    decision_outcome, error_type, error_message (the first invalid one is reported).
    """
    if status not in PREDICTION_STATUSES:
        raise InvalidRecord(
            "status", f"must be one of {', '.join(PREDICTION_STATUSES)}, not {status!r}"
        )
    checked_output = _flat_dict(output) if type(output) is dict else None
    if checked_output is None:
        checked_output = to_json(output, "output")
    if confidence is not None and not (type(confidence) is float and 0.0 < confidence <= 1.0):
        # The common case (a float in (0, 1]) is already what _check_unit_float returns.
        confidence = _check_unit_float("confidence", confidence, upper=1.0)
    # None and "" both become "" (what _check_text returns for ""), as do other falsy values
    # of error_type and error_message, which were always read as "no error".
    if decision_outcome is None or (type(decision_outcome) is str and not decision_outcome):
        decision_outcome = ""
    else:
        decision_outcome = _check_text(
            "decision_outcome", decision_outcome, MAX_DECISION_OUTCOME, allow_empty=True
        )
    error_type = (
        _check_text("error_type", error_type, MAX_ERROR_TYPE, allow_empty=True)
        if error_type
        else ""
    )
    error_message = (
        _check_text(
            "error_message", error_message, MAX_ERROR_MESSAGE, allow_empty=True, strip=False
        )
        if error_message
        else ""
    )
    return {
        "output": checked_output,
        "confidence": confidence,
        "decision_outcome": decision_outcome,
        "status": status,
        "error_type": error_type,
        "error_message": error_message,
    }


#: What ``_outcome_fields`` returns for the defaults (no outcome yet).
_NO_OUTCOME: Mapping[str, Any] = {
    "output": None,
    "confidence": None,
    "decision_outcome": "",
    "status": "success",
    "error_type": "",
    "error_message": "",
}
