"""Outcomes in bulk, from a CSV or JSON lines file (``manage.py ml_audit_outcomes``).

The file is streamed, never loaded whole: lines are read one at a time (each at most
:data:`MAX_LINE_BYTES`), checked by the rules of :func:`~.recording.record_outcome`
(:mod:`.values`), and stored in batches of ``batch_size`` lines, each batch in one
transaction: one query finds the batch's predictions by ``prediction_id`` (a second one those
named by their UUID primary key), one finds which observations are already recorded, and one
``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING`` (what ``bulk_create(ignore_conflicts=
True)`` does, as one ``executemany``: :func:`_insert`) adds the rest.

A line that cannot be stored (too long, not UTF-8, not JSON, a field missing or invalid, an
unknown prediction) is reported with its line number, and nothing of it is stored; the other
lines are. Storing the same file again adds nothing: each line's observation is already
recorded (counted as such), as is a line that repeats an earlier line of the file.

CSV: a header line naming ``prediction_id``, ``value``, ``observed_at`` and optionally
``source`` (in any order; no other column). A ``value`` cell is read as JSON when it is valid
JSON (``1``, ``0.5``, ``true``, ``"007"``, ``{"days_late": 40}``), otherwise as the text
itself (``defaulted``). JSON lines: one object per line with the keys ``prediction_id``,
``value`` (any JSON value but ``null``), ``observed_at`` and optionally ``source`` (no other
key). Blank lines are skipped. ``observed_at`` is an ISO 8601 date-time with its offset
(``2026-03-01T09:30:00Z``); one without is refused unless ``ML_AUDIT['NAIVE_DATETIME_POLICY']``
is ``"utc"``. A line without a ``source`` (or with an empty one) gets the import's ``source``.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from django.db import connections, transaction
from django.utils import timezone

from ml_audit import store
from ml_audit.conf import audit_settings
from ml_audit.decision_models import Outcome
from ml_audit.exceptions import InvalidRecord
from ml_audit.ids import uuid7
from ml_audit.models import PredictionEvent
from ml_audit.normalise import check_storable_text
from ml_audit.outcomes.values import (
    check_label,
    outcome_key,
    outcome_value,
    parse_observed_at,
)
from ml_audit.records import MAX_PREDICTION_ID

__all__ = [
    "FIELDS",
    "FORMATS",
    "MAX_LINE_BYTES",
    "BadLine",
    "ImportFileError",
    "ImportResult",
    "format_of",
    "import_outcomes",
]

#: A longer line is reported as bad (and skipped to its end) without being held in memory.
MAX_LINE_BYTES = 65_536
FORMATS = ("csv", "jsonl")
REQUIRED = ("prediction_id", "value", "observed_at")
FIELDS = (*REQUIRED, "source")
DEFAULT_BATCH_SIZE = 1000

Progress = Callable[[int], None]


class ImportFileError(ValueError):
    """The file as a whole cannot be read (its CSV header, its format): nothing was stored."""


@dataclass(frozen=True)
class BadLine:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportResult:
    """What an import did: data lines read, outcomes recorded, lines whose observation was
    already recorded, and the bad lines (in file order)."""

    dry_run: bool = False
    lines: int = 0
    recorded: int = 0
    already_recorded: int = 0
    bad: list[BadLine] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "lines": self.lines,
            "recorded": self.recorded,
            "already_recorded": self.already_recorded,
            "bad": [{"line": bad.line, "message": bad.message} for bad in self.bad],
        }


def format_of(name: str) -> str | None:
    """The format a file name implies: ``.csv`` is CSV, ``.jsonl``/``.ndjson``/``.json`` JSON
    lines; ``None`` otherwise."""
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return None


@dataclass
class _Line:
    """A checked line, waiting for its batch."""

    line: int
    reference: str
    value: Any
    observed_at: Any
    source: str


def import_outcomes(
    stream: IO[bytes],
    *,
    format: str,
    source: str = "",
    recorded_by: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    using: str | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Record the outcomes of a CSV or JSON lines ``stream`` (binary, UTF-8); see the module
    docstring. ``progress`` is called with the number of lines each batch consumed. With
    ``dry_run`` every line is checked and its prediction looked up, and nothing is stored.

    Raises :class:`ImportFileError` (nothing stored) for a CSV header that does not name the
    columns, and :class:`~ml_audit.exceptions.InvalidRecord` for an invalid ``source`` or
    ``recorded_by``.
    """
    if format not in FORMATS:
        raise ImportFileError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    default_source = check_label("source", source)
    recorded_by = check_label("recorded_by", recorded_by)
    alias = store.resolve_alias(using)
    result = ImportResult(dry_run=dry_run)
    batch = _Batch(alias, result, recorded_by, dry_run)
    reader = _csv_lines if format == "csv" else _json_lines
    consumed = 0
    policy = audit_settings.NAIVE_DATETIME_POLICY
    for number, item in reader(stream):
        consumed = number
        if isinstance(item, BadLine):
            result.lines += 1
            result.bad.append(item)
            continue
        if item is None:  # a blank line
            continue
        result.lines += 1
        try:
            batch.pending.append(_checked(number, item, default_source, policy))
        except InvalidRecord as exc:
            result.bad.append(BadLine(number, str(exc)))
        if len(batch.pending) >= batch_size:
            batch.flush()
            if progress is not None:
                progress(consumed - batch.reported)
            batch.reported = consumed
    batch.flush()
    if progress is not None and consumed > batch.reported:
        progress(consumed - batch.reported)
    result.bad.sort(key=lambda bad: bad.line)
    return result


def _checked(number: int, fields: dict[str, Any], default_source: str, policy: str) -> _Line:
    """A line's fields (present, of the right kinds) as a :class:`_Line`, or InvalidRecord."""
    reference = fields["prediction_id"]
    if isinstance(reference, int) and not isinstance(reference, bool):
        reference = str(reference)
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidRecord("prediction_id", "must be a non-empty string")
    reference = check_storable_text("prediction_id", reference.strip())
    value = outcome_value(fields["value"])
    observed = parse_observed_at(fields["observed_at"], policy)
    line_source = check_label("source", fields.get("source"))
    return _Line(number, reference, value, observed, line_source or default_source)


# ------------------------------------------------------------------------------ reading lines


def _physical_lines(stream: IO[bytes]) -> Iterator[tuple[int, str | BadLine]]:
    """``(line number, text)`` of each line, or a :class:`BadLine` for one that is too long
    (read to its end in pieces, never held) or not UTF-8."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while True:
                rest = stream.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, BadLine(number, f"longer than {MAX_LINE_BYTES:,} bytes")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, BadLine(number, f"not valid UTF-8 (byte {exc.start + 1})")
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        yield number, text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_refuse_constant)


def _json_lines(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | BadLine | None]]:
    for number, text in _physical_lines(stream):
        if isinstance(text, BadLine):
            yield number, text
            continue
        if not text.strip():
            yield number, None
            continue
        try:
            obj = _loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            yield number, BadLine(number, f"not valid JSON ({exc.msg}, column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:
            yield number, BadLine(number, f"not valid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            yield number, BadLine(number, f"not a JSON object but {type(obj).__name__}")
            continue
        yield number, _fields(number, obj)


def _fields(number: int, obj: dict[str, Any]) -> dict[str, Any] | BadLine:
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        return BadLine(number, f"unknown field {names} (the fields are {', '.join(FIELDS)})")
    for name in REQUIRED:
        if name not in obj:
            return BadLine(number, f"missing field {name!r}")
    return obj


def _csv_lines(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | BadLine | None]]:
    """The records of a CSV file after its header. A record may span lines (a quoted cell
    with a line break); it is reported under its first line."""
    bad: dict[int, BadLine] = {}
    position = {"line": 0}

    def texts() -> Iterator[str]:
        for number, text in _physical_lines(stream):
            position["line"] = number
            if isinstance(text, BadLine):
                bad[number] = text
                yield "\n"  # an empty record in its place
            else:
                yield text

    reader = csv.reader(texts(), strict=True)
    header: list[str] | None = None
    previous = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            first, previous = previous + 1, position["line"]
            if header is None:
                raise ImportFileError(
                    f"line {first}: the header is not valid CSV ({exc})"
                ) from None
            yield first, BadLine(first, f"not valid CSV ({exc})")
            continue
        first, previous = previous + 1, position["line"]
        problem = next((bad[n] for n in range(first, previous + 1) if n in bad), None)
        if header is None:
            if problem is not None:
                raise ImportFileError(f"line {problem.line}: the header is {problem.message}")
            if not row:
                raise ImportFileError("the first line must be the CSV header")
            header = _header(row)
            continue
        if problem is not None:
            yield first, BadLine(first, problem.message)
            continue
        if not any(cell.strip() for cell in row):
            yield first, None
            continue
        if len(row) != len(header):
            yield first, BadLine(first, f"has {len(row)} fields; the header names {len(header)}")
            continue
        cells = dict(zip(header, (cell.strip() for cell in row), strict=True))
        empty = next((name for name in REQUIRED if not cells[name]), None)
        if empty is not None:
            yield first, BadLine(first, f"missing field {empty!r} (the cell is empty)")
            continue
        cells["value"] = _csv_value(cells["value"])
        yield first, cells


def _header(row: list[str]) -> list[str]:
    names = [name.strip() for name in row]
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise ImportFileError(
            f"the CSV header names unknown columns {', '.join(repr(n) for n in unknown)}; "
            f"the columns are {', '.join(FIELDS)} (source optional)"
        )
    if len(set(names)) != len(names):
        raise ImportFileError("the CSV header names a column twice")
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise ImportFileError(
            f"the CSV header lacks {', '.join(repr(n) for n in missing)}; the columns are "
            f"{', '.join(FIELDS)} (source optional)"
        )
    return names


def _csv_value(cell: str) -> Any:
    """A ``value`` cell: its JSON when it is valid JSON, else the text (see the module
    docstring)."""
    try:
        return _loads(cell)
    except (ValueError, RecursionError):
        return cell


# ------------------------------------------------------------------------------ storing


class _Batch:
    """The checked lines waiting to be stored, and how to store them."""

    def __init__(self, alias: str, result: ImportResult, recorded_by: str, dry_run: bool) -> None:
        self.alias = alias
        self.result = result
        self.recorded_by = recorded_by
        self.dry_run = dry_run
        self.pending: list[_Line] = []
        self.reported = 0  # lines already reported to the progress callback
        # In a dry run nothing is stored, so a repeated line of an earlier batch is found here.
        self.seen: set[str] = set()

    def flush(self) -> None:
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        found = self._predictions({line.reference for line in lines})
        rows: dict[str, tuple[Any, ...]] = {}
        now = timezone.now()
        for line in lines:
            prediction = found.get(line.reference)
            if prediction is None:
                self.result.bad.append(
                    BadLine(
                        line.line,
                        f"unknown prediction {line.reference[:80]!r} (no prediction has this "
                        "prediction_id or primary key)",
                    )
                )
                continue
            pk, tenant_id = prediction
            key = outcome_key(pk, line.value, line.observed_at, line.source)
            if key in rows or key in self.seen:
                self.result.already_recorded += 1  # the same observation earlier in the file
                continue
            rows[key] = (
                uuid7(),
                pk,
                tenant_id,
                line.value,
                line.observed_at,
                line.source,
                now,
                self.recorded_by,
                key,
            )
        if not rows:
            return
        with transaction.atomic(using=self.alias):
            stored = set(
                Outcome.objects.using(self.alias)
                .filter(idempotency_key__in=list(rows))
                .values_list("idempotency_key", flat=True)
            )
            new = [row for key, row in rows.items() if key not in stored]
            if new and not self.dry_run:
                _insert(self.alias, new)
        if self.dry_run:
            self.seen.update(rows)
        self.result.already_recorded += len(stored)
        self.result.recorded += len(new)

    def _predictions(self, references: set[str]) -> dict[str, tuple[uuid.UUID, str]]:
        """``reference -> (primary key, tenant)`` of the predictions named by ``prediction_id``
        or, failing that, by their UUID primary key (as :func:`~ml_audit.services.explanations.
        resolve_prediction` reads a string): two queries at most."""
        events = PredictionEvent.objects.using(self.alias)
        named = [ref for ref in references if len(ref) <= MAX_PREDICTION_ID]
        found: dict[str, tuple[uuid.UUID, str]] = {
            ref: (pk, tenant)
            for ref, pk, tenant in events.filter(prediction_id__in=named).values_list(
                "prediction_id", "pk", "tenant_id"
            )
        }
        by_pk: dict[uuid.UUID, list[str]] = {}
        for ref in references - set(found):
            try:
                by_pk.setdefault(uuid.UUID(ref), []).append(ref)
            except ValueError:
                continue
        if by_pk:
            for pk, tenant in events.filter(pk__in=list(by_pk)).values_list("pk", "tenant_id"):
                for ref in by_pk[pk]:
                    found[ref] = (pk, tenant)
        return found


#: The columns :func:`_insert` writes, in its rows' order.
_COLUMNS = (
    "id",
    "prediction_id",
    "tenant_id",
    "value",
    "observed_at",
    "source",
    "recorded_at",
    "recorded_by",
    "idempotency_key",
)


def _insert(alias: str, rows: list[tuple[Any, ...]]) -> None:
    """``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING`` of ``rows`` (in
    :data:`_COLUMNS` order), one ``executemany``: what ``bulk_create(ignore_conflicts=True)``
    does, without building a model instance and compiling every value of every row (which
    took half of a 100,000-line import). Values are adapted by the fields' own database
    preparation (UUIDs, JSON, times), as the ORM adapts them."""
    connection = connections[alias]
    ops = connection.ops
    pk_field = Outcome._meta.pk
    assert pk_field is not None
    prepare_uuid = pk_field.get_db_prep_value
    quote = ops.quote_name
    columns = ", ".join(quote(name) for name in _COLUMNS)
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    sql = (
        f"INSERT INTO {quote(Outcome._meta.db_table)} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT ({quote('idempotency_key')}) DO NOTHING"
    )
    params = [
        (
            prepare_uuid(row_id, connection),
            prepare_uuid(prediction, connection),
            tenant_id,
            ops.adapt_json_value(value, None),
            ops.adapt_datetimefield_value(observed_at),
            source,
            ops.adapt_datetimefield_value(recorded_at),
            recorded_by,
            key,
        )
        for (
            row_id,
            prediction,
            tenant_id,
            value,
            observed_at,
            source,
            recorded_at,
            recorded_by,
            key,
        ) in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
