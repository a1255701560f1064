"""Replaying one claimed spool file: its records into the database, its bad lines aside.

:class:`~ml_audit.otel.spool.Spool` lists and claims files; :func:`replay_file` replays one
that it holds (locked, renamed ``.replaying``). Every line is read back by
:func:`~ml_audit.otel.spool_lines.decode_line` (validated and redacted again, see
:mod:`ml_audit.otel.spool_lines`); a line that does not pass, is too long or too deeply nested
is *quarantined*: copied to the ``.corrupt`` file next to it once the rest of its file is
replayed, logged with its reason and counted (:attr:`ReplayResult.corrupt`). It never holds
back the lines after it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ml_audit.otel import spool_files
from ml_audit.otel.spool_lines import SpooledExplanation
from ml_audit.records import PredictionRecord

if TYPE_CHECKING:
    from ml_audit.otel.spool_lines import SpoolEntry
    from ml_audit.store import WriteResult

__all__ = ["ExplanationWriter", "ReplayResult", "ReplayWriter", "replay_file"]

logger = logging.getLogger("ml_audit.otel")

#: ``write(records, using)``: persist the records (``using``: the alias they were spooled for,
#: or None) and return the writer's per-record outcomes; raise if nothing could be written.
ReplayWriter = Callable[[list[PredictionRecord], str | None], "WriteResult"]

#: ``write_explanation(entry, using)``: store a spooled explanation as a new revision of its
#: prediction's explanation; True when a revision was written, False when the identical one was
#: already current. Raises when the prediction is not stored (yet) or the database fails.
ExplanationWriter = Callable[[SpooledExplanation, str | None], bool]

#: ``decode(line)``: the entry of one line, or ``ValueError``.
LineDecoder = Callable[[bytes], "SpoolEntry"]

#: ``keep(entries, using)``: append entries that cannot be written now to the spool (durably),
#: or raise ``OSError``.
Keeper = Callable[[list[PredictionRecord | SpooledExplanation], str | None], object]

#: Quarantined lines logged one by one per file; the rest are summed up in one message.
_LOGGED_LINES = 100


@dataclasses.dataclass
class ReplayResult:
    """What a replay did. ``replayed`` records are in the database now."""

    #: Files replayed completely (and deleted).
    files: int = 0
    #: Rows inserted by the replay.
    inserted: int = 0
    #: Records already stored with the same content (written before they were spooled, or
    #: replayed before): not written again.
    duplicates: int = 0
    #: Records whose prediction_id is stored with different content: refused and logged.
    conflicts: int = 0
    #: Lines that could not be read back (torn, too long, too deep, not a valid record), and
    #: entries named like spool files that may not be read (not a regular file, unreadable,
    #: another user's): quarantined to a ``.corrupt`` file and logged.
    corrupt: int = 0
    #: Lines a process was still copying into a mapped journal segment when it died: their
    #: records were never acknowledged (the append had not returned). Logged and dropped.
    unfinished: int = 0
    #: Records left in the spool because writing them failed (they will be replayed again).
    failed: int = 0
    #: Files skipped because another process holds them.
    skipped: int = 0

    @property
    def replayed(self) -> int:
        return self.inserted + self.duplicates

    @property
    def ok(self) -> bool:
        """Nothing failed, conflicted or was corrupt."""
        return not (self.failed or self.conflicts or self.corrupt)

    def add(self, other: ReplayResult) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class _Quarantine:
    """The lines of one file to move aside: byte ranges (adjacent ones merged, so memory stays
    small) and the first reasons, for the log."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.reasons: list[tuple[int, str]] = []
        self.count = 0

    def add(self, line: spool_files.SpoolLine, reason: str) -> None:
        self.count += 1
        if len(self.reasons) < _LOGGED_LINES:
            self.reasons.append((line.number, reason))
        start, end = line.offset, line.offset + line.length
        if self.ranges and self.ranges[-1][1] == start:
            self.ranges[-1] = (self.ranges[-1][0], end)
        else:
            self.ranges.append((start, end))

    def move_aside(self, fd: int, source: Path) -> None:
        """Append the lines to the ``.corrupt`` file of ``source`` and log them."""
        target_fd, target = spool_files.open_quarantine(source)
        try:
            spool_files.copy_ranges(fd, self.ranges, target_fd)
        finally:
            os.close(target_fd)
        for number, reason in self.reasons:
            logger.error(
                "ml_audit: spool file %s line %d cannot be read back (%s); moved to %s",
                source.name,
                number,
                reason,
                target.name,
            )
        if self.count > len(self.reasons):
            logger.error(
                "ml_audit: spool file %s: %d more line(s) cannot be read back; moved to %s",
                source.name,
                self.count - len(self.reasons),
                target.name,
            )


def replay_file(
    fd: int,
    path: Path,
    *,
    decode: LineDecoder,
    write: ReplayWriter,
    write_explanation: ExplanationWriter | None,
    keep: Keeper,
    batch_size: int,
    max_line_bytes: int,
    transient: Callable[[BaseException], bool],
) -> tuple[ReplayResult, bool]:
    """Replay the file ``path`` held (locked) through ``fd``; ``(result, stopped)``, stopped on
    a transient failure (the file is then renamed back to ``.ready``, else it is deleted). The
    caller closes ``fd`` (releasing the lock) afterwards, in both cases."""
    result = ReplayResult()
    quarantine = _Quarantine()
    held: dict[str | None, list[PredictionRecord | SpooledExplanation]] = {}
    chunk: list[PredictionRecord] = []
    chunk_using: str | None = None
    failure: BaseException | None = None

    def write_chunk(records: list[PredictionRecord], using: str | None) -> None:
        nonlocal failure
        try:
            _account(write(records, using), result, path)
            return
        except Exception as exc:
            if transient(exc):
                failure = exc
                result.failed += len(records)
                return
            if len(records) > 1:
                for index, record in enumerate(records):
                    write_chunk([record], using)
                    if failure is not None:
                        result.failed += len(records) - index - 1
                        return
                return
            logger.error(
                "ml_audit: spooled prediction %s from %s cannot be written (%s: %s); "
                "it is kept in the spool",
                records[0].prediction_id,
                path.name,
                type(exc).__name__,
                exc,
            )
            held.setdefault(using, []).append(records[0])

    def write_spooled_explanation(entry: SpooledExplanation, using: str | None) -> None:
        nonlocal failure
        if failure is not None:
            result.failed += 1
            return
        error: BaseException = RuntimeError("this replay writes no explanations")
        if write_explanation is not None:
            try:
                written = write_explanation(entry, using)
            except Exception as exc:
                if transient(exc):
                    failure = exc
                    result.failed += 1
                    return
                error = exc
            else:
                if written:
                    result.inserted += 1
                else:
                    result.duplicates += 1
                return
        logger.error(
            "ml_audit: spooled explanation of prediction %s from %s cannot be written "
            "(%s: %s); it is kept in the spool",
            entry.prediction_id,
            path.name,
            type(error).__name__,
            error,
        )
        held.setdefault(using, []).append(entry)

    def flush() -> None:
        if chunk:
            if failure is None:
                write_chunk(list(chunk), chunk_using)
            else:
                result.failed += len(chunk)
            chunk.clear()

    try:
        for line in spool_files.read_lines(fd, max_line_bytes):
            data = line.data
            if line.unfinished:
                result.unfinished += 1
                logger.warning(
                    "ml_audit: journal %s line %d is the unfinished copy (%d bytes) its process "
                    "was making when it died; that prediction was never acknowledged, the line "
                    "is dropped",
                    path.name,
                    line.number,
                    line.length,
                )
                continue
            if data is None:
                quarantine.add(line, f"longer than {max_line_bytes} bytes")
                continue
            if not data.strip():
                continue
            try:
                record, using = decode(data)
            except ValueError as exc:
                quarantine.add(line, str(exc))
                continue
            except Exception as exc:  # a line must never stop the replay of the others
                quarantine.add(line, f"{type(exc).__name__}: {exc}")
                continue
            if isinstance(record, SpooledExplanation):
                flush()  # its prediction may be in the chunk
                write_spooled_explanation(record, using)
                continue
            if chunk and using != chunk_using:
                flush()
            chunk_using = using
            chunk.append(record)
            if len(chunk) >= batch_size:
                flush()
        flush()
        if failure is None:
            for using, records in held.items():
                # Durably elsewhere before this file goes; else the whole file stays.
                keep(records, using)
                result.failed += len(records)
        if failure is None and quarantine.count:
            quarantine.move_aside(fd, path)  # before the file goes, or the lines would be lost
            result.corrupt = quarantine.count
    except OSError as exc:  # reading, re-spooling or quarantining failed: keep the whole file
        failure = exc
    if failure is not None:
        logger.error(
            "ml_audit: replay of spool file %s stopped (%s: %s); it stays in the spool "
            "and will be replayed again",
            path.name,
            type(failure).__name__,
            failure,
        )
        os.rename(path, path.with_suffix(spool_files.READY))
        result.corrupt = 0  # lines are moved aside only once their file is replayed
        result.failed = max(result.failed, 1)
        return result, True
    os.unlink(path)
    result.files = 1
    return result, False


def _account(outcome: WriteResult, result: ReplayResult, path: Path) -> None:
    for item in outcome.outcomes:
        if item.conflict is not None:
            result.conflicts += 1
            logger.error(
                "ml_audit: spooled prediction %s not replayed from %s: its prediction_id is "
                "already stored with different content (differs in: %s)",
                item.conflict.prediction_id,
                path.name,
                ", ".join(item.conflict.fields) or "unknown",
            )
        elif item.created:
            result.inserted += 1
        else:
            result.duplicates += 1
