"""Append-only spool files: where redacted records wait when the database cannot take them.

The batch writer spools a record when its queue stays full or the database keeps failing, and
replays the spool once a write succeeds again; ``manage.py ml_audit_replay`` replays it by hand.
A spool file holds one record per line, ``json.dumps(record.to_dict())``, plus a ``"_using"``
key when the record was meant for an explicit database alias. Only redacted records are spooled.
A line may also hold an explanation waiting for the database (:class:`SpooledExplanation`:
the prediction's id and the explanation as it would be stored); a replay writes it after the
lines before it, so after its prediction when both were spooled by one process.

Life cycle of a file (every file lives directly in the spool directory, created ``0o700``;
files are ``0o600``)::

    .spool-<pid>-<hex>.tmp      created and locked, then renamed (never seen half-made)
            |
    spool-<pid>-<hex>.jsonl     ACTIVE: the process <pid> appends to it (flush + fsync per append)
            |  rotate(): size limit, the writer after a successful batch, close()
    spool-<pid>-<hex>.ready     READY: closed, complete; any process may replay it
            |  claim: lock, then rename
    spool-<pid>-<hex>.replaying REPLAYING: one replayer holds it
            |                                   \\
            |  every record written or found     \\ a write failed: renamed back to .ready
            v  already stored: deleted            \\ (replaying it again is idempotent)

    spool-<pid>-<hex>.corrupt   lines that could not be read back (a torn write at a crash),
                                moved aside once their file was otherwise replayed; never
                                replayed, always logged.

Who may touch what. A process holds an exclusive ``flock`` on its active file, and a replayer
on the file it replays, for as long as it has the file open; the kernel releases the lock when
the process dies. Renames are only done by the lock holder. Hence:

- a ``.ready`` file is replayed by whoever locks it first (another replayer is skipped);
- a ``.replaying`` file whose lock is free was left by a replayer that died: it is reclaimed;
- an active file is *never* replayed while its writer lives. With ``include_active=True``
  (``ml_audit_replay --include-active``) an active file is replayed when its lock is free *and*
  no process with its pid exists (a crashed writer): both must hold, because ``flock`` is not
  reliable on every network filesystem and pids are not unique across containers.

Replay is idempotent: the writer inserts with ``ON CONFLICT DO NOTHING`` on ``prediction_id``,
so a record that did reach the database before it was spooled (an acknowledgement lost with
the connection) comes back as an identical duplicate, not as a second row. After ``os.fork``
the child never appends to its parent's file: it starts its own on its first append.

Crash recovery of active and replaying files needs ``flock`` (POSIX). Elsewhere the spool still
appends, rotates and replays ``.ready`` files, but never treats a file as abandoned.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_audit.records import ExplanationRecord, PredictionRecord

if TYPE_CHECKING:
    from ml_audit.store import WriteResult

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "ExplanationWriter",
    "ReplayResult",
    "ReplayWriter",
    "Spool",
    "SpoolEntry",
    "SpooledExplanation",
]

logger = logging.getLogger("ml_audit.otel")

#: An active file is rotated to ``.ready`` once it is this large.
DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024
#: Records per write call when replaying.
DEFAULT_REPLAY_BATCH_SIZE = 500

ACTIVE, READY, REPLAYING, CORRUPT = ".jsonl", ".ready", ".replaying", ".corrupt"
_USING_KEY = "_using"
_NAME = re.compile(r"^spool-(?P<pid>\d+)-(?P<token>[0-9a-f]{32})(?P<suffix>\.[a-z]+)$")

#: ``write(records, using)``: persist the records (``using``: the alias they were spooled for,
#: or None) and return the writer's per-record outcomes; raise if nothing could be written.
ReplayWriter = Callable[[list[PredictionRecord], str | None], "WriteResult"]

#: The ``"schema"`` of a spooled explanation's line.
EXPLANATION_LINE_SCHEMA = "ml_audit.spooled_explanation/1"


@dataclasses.dataclass(frozen=True)
class SpooledExplanation:
    """An explanation that could not be written: the id of its prediction and the record as
    ``attach_explanation`` would store it (validated, and redacted as the settings say)."""

    prediction_id: str
    record: ExplanationRecord


#: ``write_explanation(entry, using)``: store a spooled explanation as a new revision of its
#: prediction's explanation; True when a revision was written, False when the identical one was
#: already current. Raises when the prediction is not stored (yet) or the database fails.
ExplanationWriter = Callable[[SpooledExplanation, str | None], bool]

#: A record or an explanation, and the database alias it was meant for (None: the default).
SpoolEntry = tuple[PredictionRecord | SpooledExplanation, str | None]

if sys.platform != "win32":
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _pid_alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, belongs to someone else
            return True
        return True

    _CAN_DETECT_ABANDONED = True
else:  # pragma: no cover - not POSIX: no crash recovery of active or replaying files

    def _try_lock(fd: int) -> bool:
        return True

    def _pid_alive(pid: int) -> bool:
        return True

    _CAN_DETECT_ABANDONED = False


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
    #: Lines that could not be read back: moved to a ``.corrupt`` file and logged.
    corrupt: int = 0
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


def encode_line(record: PredictionRecord | SpooledExplanation, using: str | None = None) -> bytes:
    """One spool line (with its newline) for a redacted record or a spooled explanation."""
    data: dict[str, Any]
    if isinstance(record, SpooledExplanation):
        data = {
            "schema": EXPLANATION_LINE_SCHEMA,
            "prediction_id": record.prediction_id,
            "explanation": record.record.to_dict(),
        }
    elif not record.is_redacted:
        raise ValueError(f"record {record.prediction_id!r} was not redacted; it may not be spooled")
    else:
        data = record.to_dict()
    if using is not None:
        data[_USING_KEY] = using
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode_line(line: bytes) -> SpoolEntry:
    """The record (and alias) of one spool line; ``ValueError`` when it cannot be read back."""
    if not line.endswith(b"\n"):
        raise ValueError("line is not terminated (torn write)")
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    using = data.pop(_USING_KEY, None)
    if using is not None and not isinstance(using, str):
        raise ValueError(f"{_USING_KEY} is not a string")
    if data.get("schema") == EXPLANATION_LINE_SCHEMA:
        return _decode_explanation(data), using
    try:
        record = PredictionRecord.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"not a prediction record ({type(exc).__name__}: {exc})") from None
    if not record.is_redacted:
        raise ValueError("record is not redacted")
    return record, using


def _decode_explanation(data: dict[str, Any]) -> SpooledExplanation:
    prediction_id, explanation = data.get("prediction_id"), data.get("explanation")
    if set(data) != {"schema", "prediction_id", "explanation"}:
        raise ValueError("not a spooled explanation (unexpected keys)")
    if not isinstance(prediction_id, str) or not prediction_id:
        raise ValueError("spooled explanation without a prediction id")
    if not isinstance(explanation, dict):
        raise ValueError("spooled explanation without its explanation")
    try:
        record = ExplanationRecord.from_dict(explanation)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"not an explanation record ({type(exc).__name__}: {exc})") from None
    return SpooledExplanation(prediction_id, record)


def parse_name(path: Path) -> tuple[int, str] | None:
    """``(pid, suffix)`` of a spool file name, or None for any other file."""
    match = _NAME.match(path.name)
    if match is None:
        return None
    return int(match["pid"]), match["suffix"]


class Spool:
    """Append-only spool files in one directory (see the module docstring for the life cycle).

    Thread-safe. The directory is created (``0o700``) on the first append; constructing a
    ``Spool`` touches nothing.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    ) -> None:
        if isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int):
            raise ValueError("max_file_bytes must be a positive integer.")
        if max_file_bytes <= 0:
            raise ValueError("max_file_bytes must be a positive integer.")
        self.directory = Path(directory)
        self.max_file_bytes = max_file_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._records = 0
        #: Descriptors of files this process is replaying (closed in a forked child).
        self._claimed: set[int] = set()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_in_child() -> None:
                spool = ref()
                if spool is not None:
                    spool._after_fork_in_child()

            os.register_at_fork(after_in_child=after_in_child)

    def __repr__(self) -> str:
        return f"<Spool {str(self.directory)!r}>"

    # ------------------------------------------------------------------ writing

    @property
    def active_path(self) -> Path | None:
        """The file this process appends to now (None until the first append)."""
        return self._path

    @property
    def active_records(self) -> int:
        """Records in the active file (0 when there is none)."""
        return self._records

    def append(
        self,
        records: Sequence[PredictionRecord | SpooledExplanation],
        *,
        using: str | None = None,
    ) -> Path | None:
        """Append redacted records to this process's active file, durably; return its path
        (None when ``records`` is empty: nothing is touched then).

        The data is flushed and ``fsync``-ed before this returns. If the write fails part-way
        (disk full...) the file is cut back to where it was, so a failed append leaves no torn
        line, and the ``OSError`` propagates. ``ValueError`` for an unredacted record (nothing
        is written then).
        """
        data = b"".join(encode_line(record, using) for record in records)
        if not data:
            return None
        with self._lock:
            if self._fd is None:
                self._open_locked()
            fd, path = self._fd, self._path
            assert fd is not None
            assert path is not None
            start = self._size
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                except OSError:
                    # Could not even cut it back: never append after a torn line.
                    self._close_locked()
                raise
            self._size += len(data)
            self._records += len(records)
            if self._size >= self.max_file_bytes:
                self._close_locked()
            return path

    def rotate(self) -> Path | None:
        """Close the active file and make it ``.ready``; its path, or None if there was none.

        An active file without records is removed instead.
        """
        with self._lock:
            return self._close_locked()

    close = rotate

    def _open_locked(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stem = f"spool-{os.getpid()}-{uuid.uuid4().hex}"
        tmp = self.directory / f".{stem}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            # Locked before it has its real name, so nobody can ever see it unlocked.
            if not _try_lock(fd):  # pragma: no cover - a fresh file cannot be locked by others
                raise OSError(f"cannot lock new spool file {tmp}")
            path = self.directory / f"{stem}{ACTIVE}"
            os.rename(tmp, path)
            _fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            with suppress(OSError):
                os.unlink(tmp)
            raise
        self._fd, self._path, self._size, self._records = fd, path, 0, 0

    def _close_locked(self) -> Path | None:
        fd, path = self._fd, self._path
        if fd is None or path is None:
            return None
        self._fd, self._path, self._size, records, self._records = None, None, 0, self._records, 0
        target: Path | None = None
        try:
            if records == 0:
                os.unlink(path)
            else:
                target = path.with_suffix(READY)
                # Renamed while still locked: nobody can claim it before it is complete.
                os.rename(path, target)
                _fsync_directory(self.directory)
        finally:
            os.close(fd)
        return target

    def _after_fork_in_child(self) -> None:
        # Drop the child's copies of the parent's descriptors without unlocking them: an
        # flock belongs to the open file description, shared with the parent, which keeps
        # writing its file and holding its lock. The child starts its own file when needed.
        self._lock = threading.Lock()
        for fd in [self._fd, *self._claimed]:
            if fd is not None:
                with suppress(OSError):
                    os.close(fd)
        self._fd, self._path, self._size, self._records = None, None, 0, 0
        self._claimed = set()

    # ------------------------------------------------------------------ reading

    def _files(self, suffix: str) -> list[Path]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            path = Path(entry.path)
            parsed = parse_name(path)
            if parsed is not None and parsed[1] == suffix:
                found.append(path)
        return sorted(found, key=_age_key)

    def ready_files(self) -> list[Path]:
        """``.ready`` files, oldest first."""
        return self._files(READY)

    def active_files(self) -> list[Path]:
        """Active files of every process (this one's included), oldest first."""
        return self._files(ACTIVE)

    def corrupt_files(self) -> list[Path]:
        return self._files(CORRUPT)

    def abandoned_files(self, *, include_active: bool = False) -> list[Path]:
        """Files left by a dead process: ``.replaying`` files nobody holds and, with
        ``include_active``, active files whose lock is free and whose pid does not exist."""
        if not _CAN_DETECT_ABANDONED:  # pragma: no cover
            return []
        found = [p for p in self._files(REPLAYING) if not _is_held(p)]
        if include_active:
            for path in self._files(ACTIVE):
                parsed = parse_name(path)
                assert parsed is not None
                if path != self._path and not _pid_alive(parsed[0]) and not _is_held(path):
                    found.append(path)
        return sorted(found, key=_age_key)

    def replayable_files(self, *, include_active: bool = False) -> list[Path]:
        """What :meth:`replay` would try, oldest first."""
        return sorted(
            [*self.ready_files(), *self.abandoned_files(include_active=include_active)],
            key=_age_key,
        )

    def replay(
        self,
        write: ReplayWriter,
        *,
        batch_size: int = DEFAULT_REPLAY_BATCH_SIZE,
        include_active: bool = False,
        max_files: int | None = None,
        is_transient: Callable[[BaseException], bool] | None = None,
        write_explanation: ExplanationWriter | None = None,
    ) -> ReplayResult:
        """Write the records of every replayable file with ``write``, oldest file first, and
        delete each file once all its records are in the database.

        Spooled explanations are written with ``write_explanation``, each after the records
        before it; they count as records below (``inserted`` when a revision was written,
        ``duplicates`` when the identical one was current). One that cannot be written (its
        prediction is not stored yet, or no ``write_explanation`` was given) is kept in the
        spool like a record that cannot be written.

        ``is_transient(exc)`` tells a failure of the database as a whole (connection lost:
        stop, the file goes back to ``.ready`` and its unwritten records count as ``failed``)
        from a failure caused by the records (each record of the chunk is then written on its
        own, and the ones that still fail are appended to a new spool file of this process,
        so that one bad record never holds back the others). Without ``is_transient`` every
        failure is treated as transient. Conflicting records are refused by the writer and
        logged; unreadable lines go to a ``.corrupt`` file. Never raises for a failed write.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a positive integer.")
        transient = is_transient or _always
        total = ReplayResult()
        done = 0
        for path in self.replayable_files(include_active=include_active):
            if max_files is not None and done >= max_files:
                break
            claimed = self._claim(path)
            if claimed is None:
                total.skipped += 1
                continue
            done += 1
            fd, replaying = claimed
            result, stopped = self._replay_claimed(
                fd, replaying, write, write_explanation, batch_size, transient
            )
            total.add(result)
            if stopped:
                break
        return total

    def _claim(self, path: Path) -> tuple[int, Path] | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if not _try_lock(fd):
                os.close(fd)
                return None
            # Between listing and locking, its holder may have renamed or replayed it.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                os.close(fd)
                return None
            mine = os.fstat(fd)
            if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)
                return None
            target = path.with_suffix(REPLAYING)
            if path != target:
                os.rename(path, target)
        except BaseException:
            with suppress(OSError):
                os.close(fd)
            raise
        with self._lock:
            self._claimed.add(fd)
        return fd, target

    def _release(self, fd: int) -> None:
        with self._lock:
            self._claimed.discard(fd)
        os.close(fd)

    def _replay_claimed(
        self,
        fd: int,
        path: Path,
        write: ReplayWriter,
        write_explanation: ExplanationWriter | None,
        batch_size: int,
        transient: Callable[[BaseException], bool],
    ) -> tuple[ReplayResult, bool]:
        """Replay one claimed file; ``(result, stopped)``, stopped on a transient failure."""
        result = ReplayResult()
        corrupt: list[tuple[int, bytes, str]] = []
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
            for lineno, line in _lines(fd):
                if not line.strip():
                    continue
                try:
                    record, using = decode_line(line)
                except ValueError as exc:
                    corrupt.append((lineno, line, str(exc)))
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
                    self.append(records, using=using)
                    result.failed += len(records)
        except OSError as exc:  # reading or re-spooling failed: keep the whole file
            failure = exc
        if failure is not None:
            logger.error(
                "ml_audit: replay of spool file %s stopped (%s: %s); it stays in the spool "
                "and will be replayed again",
                path.name,
                type(failure).__name__,
                failure,
            )
            try:
                os.rename(path, path.with_suffix(READY))
            finally:
                self._release(fd)
            result.corrupt = 0  # lines are moved aside only once their file is replayed
            result.failed = max(result.failed, 1)
            return result, True
        try:
            if corrupt:
                _move_aside(path.with_suffix(CORRUPT), corrupt, path)
                result.corrupt = len(corrupt)
            os.unlink(path)
        finally:
            self._release(fd)
        result.files = 1
        return result, False


def _always(exc: BaseException) -> bool:
    return True


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


def _move_aside(target: Path, lines: list[tuple[int, bytes, str]], source: Path) -> None:
    data = b"".join(line if line.endswith(b"\n") else line + b"\n" for _, line, _ in lines)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    for lineno, _, reason in lines:
        logger.error(
            "ml_audit: spool file %s line %d cannot be read back (%s); moved to %s",
            source.name,
            lineno,
            reason,
            target.name,
        )


def _lines(fd: int) -> Iterator[tuple[int, bytes]]:
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", closefd=False) as handle:
        yield from enumerate(handle, start=1)


def _is_held(path: Path) -> bool:
    """Whether some process holds the file's lock (False when it vanished)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # gone: someone handled it
    try:
        # Taking the lock to test it; closing our descriptor gives it back at once.
        return not _try_lock(fd)
    finally:
        os.close(fd)


def _age_key(path: Path) -> tuple[float, str]:
    try:
        return (path.stat().st_mtime, path.name)
    except FileNotFoundError:
        return (0.0, path.name)


def _fsync_directory(directory: Path) -> None:
    # Makes the new directory entry itself durable; not possible on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
