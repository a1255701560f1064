"""The write-ahead journal of the ``journal`` write mode: acknowledged means on disk.

In ``journal`` mode (the default) the span processor appends every record to this process's
journal segment *before* ``span.end()`` returns, then queues it for the batch writer. The
append is one ``write()`` into a file opened ``O_APPEND``: once it returns, the line is in the
kernel, which keeps it whatever happens to the process (``kill -9``, an out-of-memory kill, a
crash, an exit that skips ``atexit``). With ``fsync=True`` (``ML_AUDIT['JOURNAL_FSYNC']``)
each append is also ``fdatasync``-ed, so it survives a power loss or a kernel crash too;
without it, what the kernel has not written back yet (seconds) is lost in those cases.

Segments are spool files (same line format, see :mod:`ml_audit.otel.spool`) named
``spool-<pid>-<hex>.journal``, created ``0o600`` and locked (``flock``) by their process for as
long as it lives. The writer reports each record it has finished with (written to the database,
or copied to the spool) through :meth:`Journal.done`; a segment whose records are all finished
is emptied (``ftruncate``) or, once full and rotated, deleted. A segment whose owner died keeps
its unfinished records and its lock is free: the spool's replay takes it like a ``.ready``
file (idempotently: records that did reach the database come back as identical duplicates).
"""

from __future__ import annotations

import os
import threading
import weakref
from contextlib import suppress
from pathlib import Path

from ml_audit.otel.spool_files import JOURNAL, create_locked, prepare_directory
from ml_audit.otel.spool_lines import encode_line
from ml_audit.records import PredictionRecord

__all__ = ["JOURNAL", "Journal", "Segment", "journal_line"]

#: A segment is rotated once it holds this many bytes (and deleted when its records are done).
DEFAULT_MAX_SEGMENT_BYTES = 8 * 1024 * 1024

_datasync = os.fdatasync if hasattr(os, "fdatasync") else os.fsync  # macOS: fsync


def journal_line(record: PredictionRecord, using: str | None, latency_ms: float | None) -> bytes:
    """The spool line of a queued record: :func:`~ml_audit.otel.spool_lines.encode_line`, with
    the alias it goes to and the latency the writer will set on it."""
    return encode_line(record, using, latency_ms=latency_ms)


class Segment:
    """One journal file: how many records were appended to it and how many are done."""

    __slots__ = ("appended", "done", "fd", "path", "rotated", "size")

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self.appended = 0
        self.done = 0
        self.size = 0
        self.rotated = False


class Journal:
    """This process's journal segments in ``directory`` (thread-safe, fork-aware)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = False,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.max_segment_bytes = max_segment_bytes
        self._lock = threading.Lock()
        self._segment: Segment | None = None
        #: Rotated segments with records not done yet.
        self._rotated: set[Segment] = set()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_in_child() -> None:
                journal = ref()
                if journal is not None:
                    journal._after_fork_in_child()

            os.register_at_fork(after_in_child=after_in_child)

    def __repr__(self) -> str:
        return f"<Journal {str(self.directory)!r}>"

    def append(self, line: bytes) -> Segment:
        """Write one line (see :func:`journal_line`) durably as configured; its segment.

        Raises ``OSError`` when it cannot be written (nothing of it is kept then).
        """
        with self._lock:
            segment = self._segment
            if segment is None:
                segment = self._segment = self._open_locked()
            start = segment.size
            try:
                written = os.write(segment.fd, line)
                if written != len(line):  # a short write: disk full, a signal...
                    view = memoryview(line)[written:]
                    while view:
                        view = view[os.write(segment.fd, view) :]
                if self.fsync:
                    _datasync(segment.fd)
            except OSError:
                self._cut_back_locked(segment, start)
                raise
            segment.size = start + len(line)
            segment.appended += 1
            if segment.size >= self.max_segment_bytes:
                self._rotate_locked(segment)
            return segment

    def done(self, segment: Segment, count: int = 1) -> None:
        """``count`` records of ``segment`` are in the database or the spool."""
        with self._lock:
            segment.done += count
            if segment.done < segment.appended:
                return
            if segment.rotated:
                self._rotated.discard(segment)
                self._remove_locked(segment)
            elif segment is self._segment and segment.size:
                # Everything in it is safe elsewhere: start it again from empty.
                try:
                    os.ftruncate(segment.fd, 0)
                except OSError:
                    return
                segment.size = 0

    def pending(self) -> int:
        """Records appended to this process's segments and not done yet."""
        with self._lock:
            return sum(s.appended - s.done for s in self._segments_locked())

    def close(self) -> None:
        """Release this process's segments: a segment whose records are all done is deleted;
        one with records not done stays, unlocked, for the next writer to replay."""
        with self._lock:
            segments = self._segments_locked()
            self._segment = None
            self._rotated = set()
            for segment in segments:
                if segment.done >= segment.appended:
                    self._remove_locked(segment)
                else:
                    with suppress(OSError):
                        os.close(segment.fd)

    # ------------------------------------------------------------------ internals

    def _segments_locked(self) -> list[Segment]:
        return [*self._rotated, *([self._segment] if self._segment else [])]

    def _open_locked(self) -> Segment:
        # The spool's rules: a private directory (InsecureSpoolDirectory otherwise), a 0600
        # file locked before it has its name.
        prepare_directory(self.directory)
        fd, path = create_locked(self.directory, JOURNAL)
        return Segment(fd, path)

    def _rotate_locked(self, segment: Segment) -> None:
        segment.rotated = True
        if self._segment is segment:
            self._segment = None
        if segment.done >= segment.appended:
            self._remove_locked(segment)
        else:
            self._rotated.add(segment)

    def _remove_locked(self, segment: Segment) -> None:
        # Unlinked while still locked and open: nobody can claim a file that is going away.
        with suppress(OSError):
            os.unlink(segment.path)
        with suppress(OSError):
            os.close(segment.fd)
        if self._segment is segment:
            self._segment = None

    def _cut_back_locked(self, segment: Segment, start: int) -> None:
        try:
            os.ftruncate(segment.fd, start)
        except OSError:
            # A torn line may remain: never append after it. The segment stays for replay,
            # which quarantines the torn line.
            self._rotate_locked(segment)

    def _after_fork_in_child(self) -> None:
        # The child's copies of the parent's descriptors are closed without unlocking: the
        # flock belongs to the open file description the parent still holds.
        self._lock = threading.Lock()
        for segment in self._segments_locked():
            with suppress(OSError):
                os.close(segment.fd)
        self._segment = None
        self._rotated = set()
