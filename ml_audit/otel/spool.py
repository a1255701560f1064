"""Append-only spool files: where redacted records wait when the database cannot take them.

The batch writer spools a record when its queue stays full or the database keeps failing, and
replays the spool once a write succeeds again; ``manage.py ml_audit_replay`` replays it by hand.
A spool file holds one record per line (the format, and how a line is read back, are in
:mod:`ml_audit.otel.spool_lines`): ``json.dumps(record.to_dict())``, plus a ``"_using"`` key
when the record was meant for an explicit database alias and a ``"_latency_ms"`` key when its
latency is set on it at replay. Only redacted records are spooled. A line may also hold an
explanation waiting for the database (:class:`SpooledExplanation`: the prediction's id and the
explanation as it would be stored); a replay writes it after the lines before it, so after its
prediction when both were spooled by one process.

Life cycle of a file (every file lives directly in the spool directory, created ``0o700``;
files are ``0o600``; see :mod:`ml_audit.otel.spool_files`)::

    .spool-<pid>-<hex>.tmp      created and locked, then renamed (never seen half-made or unlocked)
            |                                        |
    spool-<pid>-<hex>.jsonl     ACTIVE: its process  |  spool-<pid>-<hex>.journal  JOURNAL: its
            |  appends to it (flush + fsync per      |  process appends every record it is about
            |  append)                               |  to write (``ml_audit.otel.journal``) and
            |  rotate(): size limit, the writer      |  deletes it once they are in the database
            |  after a successful batch, close()     |
    spool-<pid>-<hex>.ready     READY: closed, complete; any process may replay it
            |  claim (a ready file; an active or journal file whose lock is free): lock, rename
    spool-<pid>-<hex>.replaying REPLAYING: one replayer holds it
            |                                   \\
            |  every record written or found     \\ a write failed: renamed back to .ready
            v  already stored: deleted            \\ (replaying it again is idempotent)

    spool-<pid>-<hex>.corrupt   quarantine: lines that could not be read back (a torn write at
                                a crash, a line too long or too deep, a record that is not
                                valid), moved aside once their file was otherwise replayed, and
                                entries named like spool files that may not be read (not a
                                regular file, unreadable, another user's); never replayed,
                                always logged, counted in ``ReplayResult.corrupt``.

Who may touch what. A process holds an exclusive ``flock`` on its active and journal files,
and a replayer on the file it replays, for as long as it has the file open; the kernel
releases the lock when the process dies, however it died. Renames are only done by the lock
holder. Liveness is the lock, never the pid in the name (pids are reused, also by other
processes, and are not unique across containers). Hence:

- a ``.ready`` file is replayed by whoever locks it first (another replayer is skipped), so
  two live processes (or threads) never replay one file at once;
- a ``.replaying`` file whose lock is free was left by a replayer that died: it is reclaimed;
- an active ``.jsonl`` or ``.journal`` file whose lock is free was left by a process that
  died (or closed its journal with records not written): it is *abandoned*, and
  :meth:`Spool.replay` replays it like a ready file (claimed, renamed ``.replaying``, deleted
  once done). One whose lock is held is never touched. (``include_active``, which used to ask
  for active files of dead pids, is accepted and no longer needed.)

A mapped journal segment (:mod:`ml_audit.otel.journal`) ends in NUL padding; a line cut short
by it is the copy its process was making when it died, whose record was never acknowledged:
it is logged and dropped (``ReplayResult.unfinished``), not quarantined.

Nothing in the directory is trusted. The directory must be private (:func:`prepare_directory`:
owned by this user, writable by nobody else; else :class:`InsecureSpoolDirectory`, also the
system check ``ml_audit.E004``); only regular files of this user are opened, without following
symlinks or blocking; lines are bounded (:data:`MAX_LINE_BYTES`, :data:`MAX_LINE_DEPTH`); and
every line is validated and redacted again as a live record before it is written (see
:mod:`ml_audit.otel.spool_lines`). Whatever fails is quarantined, and never holds back the
lines or files after it.

Replay is idempotent: the writer inserts with ``ON CONFLICT DO NOTHING`` on ``prediction_id``,
so a record that did reach the database before it was spooled (an acknowledgement lost with
the connection) comes back as an identical duplicate, not as a second row. After ``os.fork``
the child never appends to its parent's file: it starts its own on its first append.

Crash recovery of active, journal and replaying files needs ``flock`` (POSIX). Elsewhere the
spool still appends, rotates and replays ``.ready`` files, but never treats a file as abandoned.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from ml_audit.otel.replay import (
    ExplanationWriter,
    LineDecoder,
    ReplayResult,
    ReplayWriter,
    replay_file,
)
from ml_audit.otel.spool_files import (
    ACTIVE,
    CAN_DETECT_ABANDONED,
    CORRUPT,
    JOURNAL,
    READY,
    REPLAYING,
    InsecureSpoolDirectory,
    RefusedFile,
    age_key,
    check_directory,
    create_locked,
    fsync_directory,
    is_held,
    open_regular,
    parse_name,
    prepare_directory,
    quarantine_entry,
    try_lock,
)
from ml_audit.otel.spool_lines import (
    EXPLANATION_LINE_SCHEMA,
    MAX_LINE_BYTES,
    MAX_LINE_DEPTH,
    SpooledExplanation,
    SpoolEntry,
    decode_line,
    encode_line,
)
from ml_audit.records import PredictionRecord
from ml_audit.redaction import RedactionPolicy

__all__ = [
    "ACTIVE",
    "CORRUPT",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_REPLAY_BATCH_SIZE",
    "EXPLANATION_LINE_SCHEMA",
    "JOURNAL",
    "MAX_LINE_BYTES",
    "MAX_LINE_DEPTH",
    "READY",
    "REPLAYING",
    "ExplanationWriter",
    "InsecureSpoolDirectory",
    "ReplayResult",
    "ReplayWriter",
    "Spool",
    "SpoolEntry",
    "SpooledExplanation",
    "decode_line",
    "encode_line",
    "parse_name",
    "prepare_directory",
]

logger = logging.getLogger("ml_audit.otel")

#: An active file is rotated to ``.ready`` once it is this large.
DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024
#: Records per write call when replaying.
DEFAULT_REPLAY_BATCH_SIZE = 500


class Spool:
    """Append-only spool files in one directory (see the module docstring for the life cycle).

    Thread-safe. The directory is created (``0o700``) on the first append, or refused
    (:class:`InsecureSpoolDirectory`) when it exists and others may write to it; constructing a
    ``Spool`` touches nothing. ``max_line_bytes``: the longest line a replay reads (longer ones
    are quarantined unread).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        for name, value in (("max_file_bytes", max_file_bytes), ("max_line_bytes", max_line_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer.")
        self.directory = Path(directory)
        self.max_file_bytes = max_file_bytes
        self.max_line_bytes = max_line_bytes
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
        is written then); :class:`InsecureSpoolDirectory` when the directory is not private.
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
        prepare_directory(self.directory)
        fd, path = create_locked(self.directory, ACTIVE)
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
                fsync_directory(self.directory)
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

    def _files(self, *suffixes: str) -> list[Path]:
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for entry in entries:
            path = Path(entry.path)
            parsed = parse_name(path)
            if parsed is not None and parsed[1] in suffixes:
                found.append(path)
        return sorted(found, key=age_key)

    def ready_files(self) -> list[Path]:
        """``.ready`` files, oldest first."""
        return self._files(READY)

    def active_files(self) -> list[Path]:
        """Active files of every process (this one's included), oldest first."""
        return self._files(ACTIVE)

    def journal_files(self) -> list[Path]:
        """Journal segments of every process (live or not), oldest first."""
        return self._files(JOURNAL)

    def corrupt_files(self) -> list[Path]:
        """Quarantine files (``.corrupt``), oldest first."""
        return self._files(CORRUPT)

    def abandoned_files(self, *, include_active: bool = False) -> list[Path]:
        """Files whose owner is gone: ``.replaying``, active (``.jsonl``) and journal files
        whose lock nobody holds (see the module docstring). ``include_active`` is accepted for
        compatibility and changes nothing: the lock alone tells a live owner. Always empty
        where ``flock`` does not exist."""
        if not CAN_DETECT_ABANDONED:  # pragma: no cover
            return []
        found = [
            path
            for path in self._files(REPLAYING, ACTIVE, JOURNAL)
            if path != self._path and not is_held(path)
        ]
        return sorted(found, key=age_key)

    def replayable_files(self, *, include_active: bool = False) -> list[Path]:
        """What :meth:`replay` would try, oldest first (``include_active``: see
        :meth:`abandoned_files`)."""
        return sorted([*self.ready_files(), *self.abandoned_files()], key=age_key)

    def replay(
        self,
        write: ReplayWriter,
        *,
        batch_size: int = DEFAULT_REPLAY_BATCH_SIZE,
        include_active: bool = False,
        max_files: int | None = None,
        is_transient: Callable[[BaseException], bool] | None = None,
        write_explanation: ExplanationWriter | None = None,
        policy: RedactionPolicy | None = None,
        payloads: frozenset[str] | None = None,
    ) -> ReplayResult:
        """Write the records of every replayable file (ready files, and abandoned active,
        journal and replaying files) with ``write``, oldest file first, and delete each file
        once all its records are in the database.

        Every line is validated and redacted again as a live record (with ``policy`` and
        ``payloads``; default: the settings', read once per call); a line that does not pass
        is quarantined (``corrupt``), as is an entry that is not a regular file of this user.

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
        logged. Never raises for a failed write; raises :class:`InsecureSpoolDirectory` (before
        reading anything) when the directory is not private. ``include_active`` is accepted
        for compatibility and changes nothing (see :meth:`abandoned_files`).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a positive integer.")
        transient = is_transient or _always
        total = ReplayResult()
        if not check_directory(self.directory):
            return total
        paths = self.replayable_files()
        if not paths:
            return total
        decode = _decoder(policy, payloads)
        done = 0
        for path in paths:
            if max_files is not None and done >= max_files:
                break
            claimed = self._claim(path, total)
            if claimed is None:
                continue
            done += 1
            fd, replaying = claimed
            try:
                result, stopped = replay_file(
                    fd,
                    replaying,
                    decode=decode,
                    write=write,
                    write_explanation=write_explanation,
                    keep=self._keep,
                    batch_size=batch_size,
                    max_line_bytes=self.max_line_bytes,
                    transient=transient,
                )
            finally:
                self._release(fd)
            total.add(result)
            if stopped:
                break
        return total

    def _keep(
        self, records: list[PredictionRecord | SpooledExplanation], using: str | None
    ) -> object:
        return self.append(records, using=using)

    def _claim(self, path: Path, total: ReplayResult) -> tuple[int, Path] | None:
        """Lock ``path`` and rename it ``.replaying``: its descriptor and new path; None when
        another process holds it (counted as skipped), it vanished, or it may not be read
        (quarantined, counted as corrupt)."""
        try:
            fd = open_regular(path)
        except FileNotFoundError:
            return None
        except RefusedFile as refused:
            self._quarantine_entry(path, refused.reason, total)
            return None
        except OSError as exc:  # e.g. too many open files: says nothing about the file
            logger.warning(
                "ml_audit: spool file %s cannot be opened now (%s: %s); skipped",
                path.name,
                type(exc).__name__,
                exc,
            )
            total.skipped += 1
            return None
        try:
            if not try_lock(fd):
                os.close(fd)
                total.skipped += 1
                return None
            # Between listing and locking, its holder may have renamed or replayed it.
            try:
                current = os.lstat(path)
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

    def _quarantine_entry(self, path: Path, reason: str, total: ReplayResult) -> None:
        try:
            target = quarantine_entry(path)
        except OSError as exc:
            logger.error(
                "ml_audit: %s in the spool directory cannot be read back (%s) nor moved aside "
                "(%s: %s); skipped",
                path.name,
                reason,
                type(exc).__name__,
                exc,
            )
            total.skipped += 1
            return
        if target is None:  # vanished meanwhile
            return
        logger.error(
            "ml_audit: %s in the spool directory cannot be read back (%s); moved to %s",
            path.name,
            reason,
            target.name,
        )
        total.corrupt += 1

    def _release(self, fd: int) -> None:
        with self._lock:
            self._claimed.discard(fd)
        os.close(fd)


def _always(exc: BaseException) -> bool:
    return True


def _decoder(policy: RedactionPolicy | None, payloads: frozenset[str] | None) -> LineDecoder:
    """:func:`decode_line` with the redaction to apply resolved once (the settings' by
    default): a settings error raises here, before any file is claimed."""
    if policy is None or payloads is None:
        from ml_audit.conf import audit_settings

        policy = audit_settings.redaction_policy if policy is None else policy
        payloads = audit_settings.REDACT_PAYLOADS if payloads is None else payloads
    return functools.partial(decode_line, policy=policy, payloads=payloads)
