"""The spool's files on disk: names, locks, the directory's safety, and opening files safely.

Everything :mod:`ml_audit.otel.spool` (and the journal) does with the file system goes through
here, so that the rules below hold everywhere:

- **The directory is private.** :func:`prepare_directory` creates a missing spool directory
  ``0o700``; an existing one must be a directory owned by this process's user that neither its
  group nor others may write to, else :class:`InsecureSpoolDirectory` is raised naming it and
  its mode (as ``ssh`` refuses a key file others can read). Spool lines are replayed into the
  audit trail, so whoever can write a file there could write audit rows.
- **Files are private.** Files are created ``0o600`` (``fchmod``-ed, whatever the umask) and
  locked (``flock``) *before* they get their real name (:func:`create_locked`), so nobody ever
  sees a live file unlocked.
- **Only regular files are read.** :func:`open_regular` opens with ``O_NOFOLLOW | O_NONBLOCK``
  and refuses, after ``fstat``, anything that is not a regular file (a FIFO would hang the
  reader, a directory or a device would fail it, a symlink could point anywhere), a file owned
  by another user and a file its group or others may write to (:class:`RefusedFile`).
- **Lines are bounded.** :func:`read_lines` never holds more than ``max_line_bytes`` of one
  line in memory: a longer line is reported by its offset and length, not read.
- **Liveness is the lock.** A process holds an exclusive ``flock`` on its active and journal
  files for as long as it has them open; the kernel releases it when the process dies, whatever
  killed it. A pid says nothing (pids are reused, and are not unique across containers):
  :func:`is_held` is the only test of whether a file's owner lives. Where ``flock`` does not
  exist (not POSIX) :data:`CAN_DETECT_ABANDONED` is False and no file is ever taken for
  abandoned.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ml_audit.exceptions import ConfigurationError

__all__ = [
    "ACTIVE",
    "CAN_DETECT_ABANDONED",
    "CORRUPT",
    "JOURNAL",
    "READY",
    "REPLAYING",
    "InsecureSpoolDirectory",
    "RefusedFile",
    "SpoolLine",
    "check_directory",
    "create_locked",
    "directory_problem",
    "is_held",
    "open_regular",
    "parse_name",
    "prepare_directory",
    "read_lines",
    "try_lock",
]

ACTIVE, READY, REPLAYING, CORRUPT, JOURNAL = (
    ".jsonl",
    ".ready",
    ".replaying",
    ".corrupt",
    ".journal",
)
#: ``spool-<pid>-<32 hex><suffix>``: the pid is the creator's, for people reading the
#: directory; nothing decides anything by it.
NAME = re.compile(r"^spool-(?P<pid>\d+)-(?P<token>[0-9a-f]{32})(?P<suffix>\.[a-z]+)$")

#: Bytes read per call while skipping or copying a long line.
_CHUNK = 1024 * 1024

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: ``open()`` errors that mean "this entry is not a file we may read": quarantined, not retried.
_REFUSING_ERRNOS = frozenset(
    code
    for code in (
        errno.EACCES,
        errno.EPERM,
        errno.ELOOP,  # O_NOFOLLOW on a symlink (Linux)
        errno.EMLINK,  # O_NOFOLLOW on a symlink (FreeBSD)
        errno.ENXIO,  # a socket, a FIFO opened for writing
        errno.EISDIR,
        errno.ENODEV,
        getattr(errno, "EOPNOTSUPP", None),
        getattr(errno, "EFTYPE", None),  # O_NOFOLLOW on a symlink (macOS)
    )
    if code is not None
)


def parse_name(path: Path) -> tuple[int, str] | None:
    """``(pid, suffix)`` of a spool file name, or None for any other file."""
    match = NAME.match(path.name)
    if match is None:
        return None
    return int(match["pid"]), match["suffix"]


# ---------------------------------------------------------------------------------- locking

if sys.platform != "win32":
    import fcntl

    def try_lock(fd: int) -> bool:
        """Take the exclusive ``flock`` of ``fd`` if nobody (no other open file description,
        in this process or another) holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    CAN_DETECT_ABANDONED = True
else:  # pragma: no cover - not POSIX: no crash recovery of active, journal or replaying files

    def try_lock(fd: int) -> bool:
        return True

    CAN_DETECT_ABANDONED = False


def is_held(path: Path) -> bool:
    """Whether a live process holds the file's lock (True when it vanished: someone handled it).

    An entry that cannot be opened as a regular file counts as not held, so that the replay
    that claims it next quarantines it instead of skipping it for ever.
    """
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return True
    except (RefusedFile, OSError):
        return False
    try:
        # Taking the lock to test it; closing our descriptor gives it back at once.
        return not try_lock(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- the directory


class InsecureSpoolDirectory(ConfigurationError):
    """The spool directory may be written by someone other than this process's user (or is
    not a directory): ml_audit neither spools to it nor replays from it.

    A :class:`~ml_audit.exceptions.ConfigurationError` (hence also Django's
    ``ImproperlyConfigured``). ``directory`` is the path, ``mode`` its permission bits (None when
    it is not a directory), ``owner`` its owner's uid.
    """

    def __init__(self, directory: Path, problem: str, mode: int | None, owner: int | None) -> None:
        self.directory = directory
        self.mode = mode
        self.owner = owner
        super().__init__(problem)


def _euid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


def _inspect(directory: Path) -> tuple[str, int | None, int | None] | None:
    """``(problem, mode, owner)`` of an existing spool directory, or None when it is fine or
    does not exist."""
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return None
    mode, owner = stat.S_IMODE(info.st_mode), info.st_uid
    if not stat.S_ISDIR(info.st_mode):
        return f"ml_audit spool directory {directory} is not a directory.", None, owner
    euid = _euid()
    if euid is None:  # pragma: no cover - not POSIX: no owners or modes to check
        return None
    loose = []
    if owner != euid:
        loose.append(f"it is owned by uid {owner}, not by this process's user (uid {euid})")
    if mode & stat.S_IWGRP:
        loose.append("its group may write to it")
    if mode & stat.S_IWOTH:
        loose.append("every user may write to it")
    if not loose:
        return None
    return (
        f"ml_audit refuses the spool directory {directory} (mode {mode:#o}, owner uid {owner}): "
        f"{'; '.join(loose)}. Whoever can write there could plant records that a replay "
        "would write into the audit trail.",
        mode,
        owner,
    )


def directory_problem(directory: Path) -> str | None:
    """Why ``directory`` may not be a spool directory, or None (it is safe, or it does not exist
    yet: :func:`prepare_directory` creates it ``0o700``). For the system check."""
    found = _inspect(directory)
    return None if found is None else found[0]


def check_directory(directory: Path) -> bool:
    """Raise :class:`InsecureSpoolDirectory` unless ``directory`` is safe; whether it exists."""
    found = _inspect(directory)
    if found is not None:
        problem, mode, owner = found
        raise InsecureSpoolDirectory(directory, problem, mode, owner)
    return directory.exists()


def prepare_directory(directory: str | os.PathLike[str]) -> None:
    """Create the spool directory ``0o700`` (its missing parents as ``mkdir -p`` would) or check
    the existing one; :class:`InsecureSpoolDirectory` when it is not safe (see the module
    docstring). Run before any file is created in it."""
    path = Path(directory)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)
    else:
        os.chmod(path, 0o700)  # ours: private whatever the umask
    check_directory(path)


# ---------------------------------------------------------------------------------- files


class RefusedFile(Exception):
    """An entry named like a spool file that may not be read: ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def file_problem(info: os.stat_result) -> str | None:
    """Why a file with this ``fstat`` may not be read as a spool file, or None."""
    if not stat.S_ISREG(info.st_mode):
        return f"not a regular file ({_kind(info.st_mode)})"
    euid = _euid()
    if euid is not None and info.st_uid != euid:
        return f"owned by uid {info.st_uid}, not by this process's user (uid {euid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"its group or other users may write to it (mode {stat.S_IMODE(info.st_mode):#o})"
    return None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a file"  # pragma: no cover


def open_regular(path: Path) -> int:
    """A read-only descriptor of ``path`` if it is a regular file this user owns and alone may
    write; :class:`RefusedFile` otherwise (``FileNotFoundError`` when it vanished; other
    ``OSError`` for failures that say nothing about the file, e.g. too many open files).

    Never blocks (``O_NONBLOCK``: a FIFO with no writer would) and never follows a symlink.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in _REFUSING_ERRNOS:
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                mode = stat.S_IFREG
            if not stat.S_ISREG(mode):  # e.g. a symlink (O_NOFOLLOW)
                raise RefusedFile(f"not a regular file ({_kind(mode)})") from None
            raise RefusedFile(f"cannot be opened ({exc.strerror or exc})") from None
        raise
    try:
        problem = file_problem(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    if problem is not None:
        os.close(fd)
        raise RefusedFile(problem)
    return fd


def create_locked(
    directory: Path, suffix: str, *, readable: bool = False, sync_directory: bool = True
) -> tuple[int, Path]:
    """Create ``spool-<pid>-<hex><suffix>`` in ``directory`` (which must have passed
    :func:`prepare_directory`): ``0o600``, opened ``O_WRONLY | O_APPEND`` (``O_RDWR |
    O_APPEND`` when ``readable``, as a shared memory map needs), locked before it has its name
    (so that nobody ever sees it unlocked). Its descriptor and path.

    The directory is fsync-ed after the rename (the name survives a machine crash) unless
    ``sync_directory`` is False."""
    stem = f"spool-{os.getpid()}-{uuid.uuid4().hex}"
    tmp = directory / f".{stem}.tmp"
    fd = os.open(
        tmp,
        (os.O_RDWR if readable else os.O_WRONLY)
        | os.O_CREAT
        | os.O_EXCL
        | os.O_APPEND
        | _O_NOFOLLOW
        | _O_CLOEXEC,
        0o600,
    )
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # whatever the umask left
        if not try_lock(fd):  # pragma: no cover - a fresh file cannot be locked by others
            raise OSError(f"cannot lock new spool file {tmp}")
        path = directory / f"{stem}{suffix}"
        os.rename(tmp, path)
        if sync_directory:
            fsync_directory(directory)
    except BaseException:
        os.close(fd)
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return fd, path


def free_name(path: Path, suffix: str) -> Path:
    """``path`` with ``suffix`` if nothing has that name yet, else a fresh spool name of this
    process with that suffix (never replaces an existing entry)."""
    target = path.with_suffix(suffix)
    if not os.path.lexists(target):
        return target
    return path.parent / f"spool-{os.getpid()}-{uuid.uuid4().hex}{suffix}"


def quarantine_entry(path: Path) -> Path | None:
    """Rename an entry that may not be read (whatever it is) to a ``.corrupt`` name; the new
    path, or None when it vanished meanwhile."""
    target = free_name(path, CORRUPT)
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    return target


def open_quarantine(path: Path) -> tuple[int, Path]:
    """A descriptor to append quarantined lines of ``path`` to: ``<stem>.corrupt`` (a regular
    file of ours, created ``0o600``), or a fresh ``.corrupt`` file when that name is taken by
    something else."""
    target = path.with_suffix(CORRUPT)
    flags = os.O_WRONLY | os.O_APPEND | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC
    try:
        fd = os.open(target, flags | os.O_CREAT, 0o600)
    except OSError:
        fd = -1
    else:
        info = os.fstat(fd)
        if file_problem(info) is not None:
            os.close(fd)
            fd = -1
        elif hasattr(os, "fchmod") and info.st_size == 0:
            os.fchmod(fd, 0o600)
    if fd < 0:
        target = path.parent / f"spool-{os.getpid()}-{uuid.uuid4().hex}{CORRUPT}"
        fd = os.open(target, flags | os.O_CREAT | os.O_EXCL, 0o600)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
    return fd, target


def copy_ranges(source: int, ranges: Sequence[tuple[int, int]], target: int) -> None:
    """Append the byte ranges ``[start, end)`` of ``source`` to ``target`` in bounded chunks,
    each range ending with a newline (a torn last line gets one), then ``fsync`` it."""
    for start, end in ranges:
        position, last = start, b"\n"
        while position < end:
            data = os.pread(source, min(_CHUNK, end - position), position)
            if not data:  # the file is shorter than when it was read: nothing more to copy
                break
            _write_all(target, data)
            position += len(data)
            last = data[-1:]
        if last != b"\n":
            _write_all(target, b"\n")
    os.fsync(target)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_directory(directory: Path) -> None:
    """Make a new or renamed entry of ``directory`` durable (where the platform can)."""
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


def age_key(path: Path) -> tuple[float, str]:
    """Sort key: oldest (modification time of the entry itself) first, then by name."""
    try:
        return (os.lstat(path).st_mtime, path.name)
    except FileNotFoundError:
        return (0.0, path.name)


# ---------------------------------------------------------------------------------- lines


class SpoolLine(NamedTuple):
    """One line of a spool file: its number (from 1), byte offset and length (the newline
    included), and its bytes, or None when it is longer than the limit (then never read).

    ``unfinished``: the line is cut short by a mapped journal segment's padding, the copy its
    process was making when it died (see :func:`read_lines`)."""

    number: int
    offset: int
    length: int
    data: bytes | None
    unfinished: bool = False


def read_lines(fd: int, max_line_bytes: int) -> Iterator[SpoolLine]:
    """The lines of the file open at ``fd``, from its start; a line of more than
    ``max_line_bytes`` bytes (its newline included) comes with ``data=None`` and is skipped
    chunk by chunk, never held in memory whole.

    The file ends where only NUL bytes remain: a mapped journal segment is preallocated and
    NUL-filled (:mod:`ml_audit.otel.journal`), and no line ever holds a raw NUL byte (JSON
    escapes it). A line holding NUL bytes with only padding after it comes without its padding
    and marked ``unfinished``: it is the copy the process was making when it died, whose record
    was never acknowledged (the append had not returned); appends are serialised, so only the
    last copy can be unfinished, and a copy interrupted by ``kill -9`` can have holes (memcpy
    need not store front to back). A line holding NUL bytes with other lines after it is an
    ordinary (invalid) line, read on as any other.
    """
    os.lseek(fd, 0, os.SEEK_SET)
    offset = 0
    with open(fd, "rb", closefd=False) as handle:
        number = 0
        while True:
            data = handle.readline(max_line_bytes)
            if not data:
                return
            number += 1
            if b"\0" in data:
                # Whatever precedes the padding, holes included (see the docstring).
                end = len(data.rstrip(b"\0"))
                if _only_padding_left(handle, data, end):
                    if end:
                        yield SpoolLine(number, offset, end, data[:end], True)
                    return
            if len(data) < max_line_bytes or data.endswith(b"\n"):
                yield SpoolLine(number, offset, len(data), data)
                offset += len(data)
                continue
            length = len(data)
            del data
            while True:
                chunk = handle.readline(_CHUNK)
                length += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield SpoolLine(number, offset, length, None)
            offset += length


def _only_padding_left(handle: BinaryIO, data: bytes, start: int) -> bool:
    """Whether ``data[start:]`` and everything after it in ``handle`` are NUL bytes; the
    handle's position is kept when not."""
    tail = data[start:]
    if tail.count(0) != len(tail):
        return False
    position = handle.tell()
    while chunk := handle.read(_CHUNK):
        if chunk.count(0) != len(chunk):
            handle.seek(position)
            return False
    return True
