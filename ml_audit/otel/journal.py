"""The write-ahead journal of the ``journal`` write mode: acknowledged means on disk.

In ``journal`` mode (the default) the span processor appends every record to this process's
journal segment *before* ``span.end()`` returns, then queues it for the batch writer. The
append is a copy into the kernel's page cache: once it returns, the kernel holds the line for
the file, whatever happens to the process (``kill -9``, an out-of-memory kill, a crash, an exit
that skips ``atexit``). With ``fsync=True`` (``ML_AUDIT['JOURNAL_FSYNC']``) each append is also
``fdatasync``-ed, so it survives a power loss or a kernel crash too; without it, what the
kernel has not written back yet (seconds) is lost in those cases.

How the line gets there. Without fsync, where the platform has ``posix_fallocate`` (Linux), a
segment is *mapped*: its blocks are allocated up front (``posix_fallocate``, so writing into
the mapping never needs disk space it does not have) and the file is mapped shared, so an
append is one ``memcpy`` into the page cache, with no system call (a ``write()`` costs the
request thread several microseconds more). The rest of the segment reads as NUL bytes, which
the spool's line reader takes as its end. A line cut short by a crash during the copy was never
acknowledged, and is quarantined as a torn line. Elsewhere, with fsync, or when a segment
cannot be preallocated (a file system without ``fallocate``, a full disk), an append is one
``write()`` into the file opened ``O_APPEND``, which holds the line as durably.

Segments are spool files (same line format, see :mod:`ml_audit.otel.spool`) named
``spool-<pid>-<hex>.journal``, created ``0o600`` and locked (``flock``) by their process for as
long as it lives. The writer reports each record it has finished with (written to the database,
or copied to the spool) through :meth:`Journal.done`; a segment whose records are all finished
is deleted and the writer goes on in a fresh one (a mapped segment: a spare the writer thread
prepared, so the request thread never waits for a file to be made) or emptied (``ftruncate``:
an unmapped one); a full one is rotated and deleted once its records are done. A segment whose
owner died keeps its unfinished records and its lock is free: the spool's replay takes it like
a ``.ready`` file (idempotently: records that did reach the database come back as identical
duplicates).
"""

from __future__ import annotations

import logging
import mmap
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

logger = logging.getLogger("ml_audit.otel")

_datasync = os.fdatasync if hasattr(os, "fdatasync") else os.fsync  # macOS: fsync


def journal_line(record: PredictionRecord, using: str | None, latency_ms: float | None) -> bytes:
    """The spool line of a queued record: :func:`~ml_audit.otel.spool_lines.encode_line`, with
    the alias it goes to and the latency the writer will set on it."""
    return encode_line(record, using, latency_ms=latency_ms)


class Segment:
    """One journal file: how many records were appended to it and how many are done.

    ``map`` is its shared memory map (``capacity`` bytes, preallocated) or None when it is
    written with ``write()``."""

    __slots__ = ("appended", "capacity", "done", "fd", "map", "path", "rotated", "size")

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self.appended = 0
        self.done = 0
        self.size = 0
        self.rotated = False
        self.map: mmap.mmap | None = None
        self.capacity = 0

    def release(self) -> None:
        """Unmap and close it (the file stays)."""
        if self.map is not None:
            with suppress(BufferError, ValueError):
                self.map.close()
        with suppress(OSError):
            os.close(self.fd)


class Journal:
    """This process's journal segments in ``directory`` (thread-safe, fork-aware).

    ``mapped``: write segments through a shared memory map (see the module docstring); the
    default is to do so where ``posix_fallocate`` exists and ``fsync`` is off.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = False,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        mapped: bool | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.max_segment_bytes = max_segment_bytes
        if mapped is None:
            mapped = not fsync and hasattr(os, "posix_fallocate")
        elif mapped and fsync:
            raise ValueError("a mapped journal cannot fsync each append; use one or the other")
        self.mapped = mapped
        self._lock = threading.Lock()
        self._segment: Segment | None = None
        #: A fresh mapped segment made ready by the writer thread for when this one is done.
        self._spare: Segment | None = None
        #: Rotated segments with records not done yet.
        self._rotated: set[Segment] = set()
        self._closed = False
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
            if segment is None or (
                segment.map is not None and segment.size + len(line) > segment.capacity
            ):
                if segment is not None:
                    self._rotate_locked(segment)
                segment = self._segment = self._next_locked(len(line))
            start = segment.size
            if segment.map is not None:
                # The common case: one copy into the page cache, no system call.
                segment.map[start : start + len(line)] = line
            else:
                self._write_locked(segment, line, start)
            segment.size = start + len(line)
            segment.appended += 1
            if segment.map is None and segment.size >= self.max_segment_bytes:
                self._rotate_locked(segment)
            return segment

    def done(self, segment: Segment, count: int = 1) -> None:
        """``count`` records of ``segment`` are in the database or the spool.

        Called by the writer thread, which also prepares the next mapped segment here."""
        retired: Segment | None = None
        with self._lock:
            segment.done += count
            if segment.done >= segment.appended:
                if segment.rotated:
                    self._rotated.discard(segment)
                    retired = segment
                elif segment is self._segment and segment.size:
                    if segment.map is None:
                        # Everything in it is safe elsewhere: start it again from empty.
                        try:
                            os.ftruncate(segment.fd, 0)
                            segment.size = 0
                        except OSError:
                            pass
                    elif self._spare is not None:
                        # A mapped segment is not emptied in place (its reader would see old
                        # lines after new ones): the spare takes over, the old file goes.
                        self._segment, self._spare = self._spare, None
                        retired = segment
            prepare = self.mapped and self._spare is None and not self._closed
        if retired is not None:
            self._remove(retired)
        if prepare:
            self._prepare_spare()

    def pending(self) -> int:
        """Records appended to this process's segments and not done yet."""
        with self._lock:
            return sum(s.appended - s.done for s in self._segments_locked())

    def close(self) -> None:
        """Release this process's segments: a segment whose records are all done is deleted;
        one with records not done stays, unlocked, for the next writer to replay."""
        with self._lock:
            segments = self._segments_locked()
            spare = self._spare
            self._segment = self._spare = None
            self._rotated = set()
            self._closed = True
        if spare is not None:
            self._remove(spare)
        for segment in segments:
            if segment.done >= segment.appended:
                self._remove(segment)
            else:
                segment.release()

    # ------------------------------------------------------------------ internals

    def _segments_locked(self) -> list[Segment]:
        return [*self._rotated, *([self._segment] if self._segment else [])]

    def _next_locked(self, need: int) -> Segment:
        """The segment to append a line of ``need`` bytes to: the spare when it is big
        enough, else a new one."""
        spare = self._spare
        if spare is not None and spare.capacity >= need:
            self._spare = None
            return spare
        return self._open(need)

    def _open(self, need: int) -> Segment:
        # The spool's rules: a private directory (InsecureSpoolDirectory otherwise), a 0600
        # file locked before it has its name. Its name needs a directory fsync only when the
        # appends are fsync-ed too.
        prepare_directory(self.directory)
        fd, path = create_locked(
            self.directory, JOURNAL, readable=self.mapped, sync_directory=self.fsync
        )
        segment = Segment(fd, path)
        if self.mapped:
            capacity = max(self.max_segment_bytes, need)
            try:
                os.posix_fallocate(fd, 0, capacity)
                segment.map = mmap.mmap(fd, capacity)  # MAP_SHARED
                segment.capacity = capacity
            except (OSError, ValueError, AttributeError) as exc:
                # No fallocate on this file system, or no room: this segment is written with
                # write() instead, which reports a full disk as an error, not as SIGBUS.
                logger.warning(
                    "ml_audit: journal segment %s cannot be preallocated and mapped (%s: %s); "
                    "it is written with write() instead",
                    path.name,
                    type(exc).__name__,
                    exc,
                )
                with suppress(OSError):
                    os.ftruncate(fd, 0)
        return segment

    def _prepare_spare(self) -> None:
        """Make a fresh mapped segment (on the writer thread): it takes over at once from a
        current segment whose records are all done, else it waits as the spare."""
        try:
            spare: Segment | None = self._open(0)
        except Exception:  # the request thread makes its own segment then
            logger.debug("ml_audit: could not prepare a spare journal segment", exc_info=True)
            return
        assert spare is not None
        if spare.map is None:  # preallocation failed: write() segments need no spare
            self._remove(spare)
            return
        retired: Segment | None = None
        with self._lock:
            current = self._segment
            if self._closed or self._spare is not None:
                pass
            elif (
                current is not None
                and current.map is not None
                and current.size
                and current.done >= current.appended
            ):
                self._segment, retired, spare = spare, current, None
            else:
                self._spare, spare = spare, None
        for segment in (spare, retired):
            if segment is not None:
                self._remove(segment)

    def _write_locked(self, segment: Segment, line: bytes, start: int) -> None:
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

    def _rotate_locked(self, segment: Segment) -> None:
        segment.rotated = True
        if self._segment is segment:
            self._segment = None
        if segment.done >= segment.appended:
            self._remove(segment)
        else:
            self._rotated.add(segment)

    @staticmethod
    def _remove(segment: Segment) -> None:
        # Unlinked while still locked and open: nobody can claim a file that is going away.
        with suppress(OSError):
            os.unlink(segment.path)
        segment.release()

    def _cut_back_locked(self, segment: Segment, start: int) -> None:
        try:
            os.ftruncate(segment.fd, start)
        except OSError:
            # A torn line may remain: never append after it. The segment stays for replay,
            # which quarantines the torn line.
            self._rotate_locked(segment)

    def _after_fork_in_child(self) -> None:
        # The child's copies of the parent's descriptors are closed without unlocking: the
        # flock belongs to the open file description the parent still holds. Its copies of the
        # parent's maps are unmapped (in the child only) and never written.
        self._lock = threading.Lock()
        for segment in [*self._segments_locked(), *([self._spare] if self._spare else [])]:
            segment.release()
        self._segment = self._spare = None
        self._rotated = set()
