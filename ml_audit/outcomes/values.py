"""What an outcome is made of, checked: its value, the time it was observed, its source, and
the idempotency key over them. Pure functions (no models): :func:`~.recording.record_outcome`
and the bulk import (:mod:`.bulk`) apply the same rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

from ml_audit.canonical import canonical_json
from ml_audit.exceptions import InvalidRecord
from ml_audit.normalise import check_storable_text, to_json

__all__ = [
    "MAX_LABEL",
    "MAX_VALUE_CHARS",
    "check_label",
    "observed_time",
    "outcome_key",
    "outcome_value",
    "parse_observed_at",
]

#: The largest outcome value accepted, in characters of its canonical JSON. An outcome is a
#: label, a number or a small record ({"defaulted": true, "days_late": 40}), not a payload.
MAX_VALUE_CHARS = 16_384
#: ``source`` and ``recorded_by`` (their columns' length).
MAX_LABEL = 255


def outcome_value(value: Any) -> Any:
    """``value`` as stored: normalised as every JSON payload is (:func:`ml_audit.normalise.
    to_json`: Decimal, datetime, numpy...), not ``None``, at most :data:`MAX_VALUE_CHARS`
    characters of canonical JSON. Raises :class:`~ml_audit.exceptions.InvalidRecord`."""
    if value is None:
        raise InvalidRecord("value", "must not be None: an outcome is an observed value")
    _check_rough_size(value)
    normalised = to_json(value, "value")
    size = len(canonical_json(normalised))
    if size > MAX_VALUE_CHARS:
        raise InvalidRecord(
            "value",
            f"is {size:,} characters of JSON; an outcome may have at most {MAX_VALUE_CHARS:,}",
        )
    return normalised


def _check_rough_size(value: Any) -> None:
    """Refuse a value far beyond the limit before normalising it (a string or a container of
    that many items), so that a huge one costs nothing."""
    if isinstance(value, str | bytes | bytearray) and len(value) > MAX_VALUE_CHARS:
        raise InvalidRecord(
            "value",
            f"is {len(value):,} characters long; an outcome may have at most "
            f"{MAX_VALUE_CHARS:,} characters of JSON",
        )
    if isinstance(value, dict | list | tuple | set | frozenset) and len(value) > MAX_VALUE_CHARS:
        raise InvalidRecord(
            "value",
            f"has {len(value):,} items; an outcome may have at most {MAX_VALUE_CHARS:,} "
            "characters of JSON",
        )


def observed_time(value: Any, naive_policy: str, *, field: str = "observed_at") -> dt.datetime:
    """``value`` (a datetime) in UTC. A naive datetime is refused unless ``naive_policy`` (
    ``ML_AUDIT['NAIVE_DATETIME_POLICY']``) is ``"utc"``, as a prediction's timestamp."""
    if not isinstance(value, dt.datetime):
        raise InvalidRecord(field, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        if naive_policy != "utc":
            raise InvalidRecord(
                field,
                "is a naive datetime; give its time zone (e.g. 2026-03-01T09:30:00+00:00) or set "
                "ML_AUDIT['NAIVE_DATETIME_POLICY'] = 'utc'",
            )
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise InvalidRecord(
            field, f"{value.isoformat()} is outside the dates that can be stored in UTC"
        ) from None


def parse_observed_at(text: Any, naive_policy: str) -> dt.datetime:
    """An ISO 8601 date-time from a file (``2026-03-01T09:30:00Z``, ``...+02:00``; a date
    alone is midnight, naive), through :func:`observed_time`."""
    if not isinstance(text, str):
        raise InvalidRecord(
            "observed_at", f"must be an ISO 8601 date-time string, not {type(text).__name__}"
        )
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRecord("observed_at", f"{text[:40]!r} is not an ISO 8601 date-time") from None
    return observed_time(parsed, naive_policy)


def check_label(field: str, value: Any) -> str:
    """``source`` or ``recorded_by``: a string of at most :data:`MAX_LABEL` characters that a
    database can store (``None`` is "")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRecord(field, f"must be a string, not {type(value).__name__}")
    text = value.strip()
    if len(text) > MAX_LABEL:
        raise InvalidRecord(field, f"is {len(text)} characters long; the limit is {MAX_LABEL}")
    return check_storable_text(field, text)


def outcome_key(
    prediction_pk: uuid.UUID | str, value: Any, observed_at: dt.datetime, source: str
) -> str:
    """The idempotency key of an observation: SHA-256 of the canonical JSON of the
    prediction's primary key, the (normalised) value, the time observed (UTC, microseconds)
    and the source. Who recorded it and when are not part of it: the same observation recorded
    twice is one outcome."""
    content = {
        "prediction": str(prediction_pk),
        "value": value,
        "observed_at": observed_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "source": source,
    }
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()
