"""The machinery of the fault tests: child processes, the scratch database, a TCP proxy that
can cut PostgreSQL off, gunicorn, and the table of figures.

A trial starts a child (``recorder.py record``) that records predictions and prints each
acknowledged prediction_id, kills it (or lets a signal end it), starts the "next writer"
(:func:`run_next_writer`) with the same settings and spool directory, and counts the
acknowledged predictions that are not in the database (:meth:`ScratchDatabase.missing`).

Counts and times are parametrised by environment variables (defaults keep the whole directory
under a few minutes on two cores):

=====================================  =========================================================
``ML_AUDIT_DURABILITY_SEED``           seed of every random kill point (default: random,
                                       printed in the table and in every failure)
``ML_AUDIT_DURABILITY_TRIALS``         trials per mode of the ``kill -9`` test (default 6: the
                                       next writer alternates between the two ways)
``ML_AUDIT_DURABILITY_SIGNAL_TRIALS``  trials per case of the other tests (default 2)
``ML_AUDIT_DURABILITY_MAX_ACKS``       a child is killed at a random count up to this (2000)
``ML_AUDIT_DURABILITY_MAX_DELAY``      ... or a random delay after its first acknowledgement up
                                       to this many seconds (1.5), whichever comes first
``ML_AUDIT_DURABILITY_HTTP_SECONDS``   seconds of requests before and after the gunicorn worker
                                       is killed (1.5 each)
``ML_AUDIT_DURABILITY_FIGURES``        file the table is written to (default
                                       ``$TMPDIR/ml_audit_durability_figures.txt``)
=====================================  =========================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = sys.executable
SETTINGS_MODULE = "tests.durability.child_settings"

CHILD_START_TIMEOUT = 60.0
CHILD_EXIT_TIMEOUT = 60.0
NEXT_WRITER_TIMEOUT = 180.0
MIGRATE_TIMEOUT = 300.0

_LEAKY_ENVIRONMENT = ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "PYTHONSTARTUP")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value else default


def _session_seed() -> int:
    value = os.environ.get("ML_AUDIT_DURABILITY_SEED", "")
    return int(value) if value else random.SystemRandom().randrange(1, 10**9)


SEED = _session_seed()
TRIALS = env_int("ML_AUDIT_DURABILITY_TRIALS", 6)
SIGNAL_TRIALS = env_int("ML_AUDIT_DURABILITY_SIGNAL_TRIALS", 2)
MAX_ACKS = env_int("ML_AUDIT_DURABILITY_MAX_ACKS", 2000)
MAX_DELAY = env_float("ML_AUDIT_DURABILITY_MAX_DELAY", 1.5)
HTTP_SECONDS = env_float("ML_AUDIT_DURABILITY_HTTP_SECONDS", 1.5)
FIGURES_FILE = Path(
    os.environ.get("ML_AUDIT_DURABILITY_FIGURES")
    or Path(tempfile.gettempdir()) / "ml_audit_durability_figures.txt"
)

#: The ways to run the next writer: a process whose processor starts its writer thread, or
#: the management command (``--include-active``: the documented recovery after a crash).
NEXT_WRITERS = ("writer", "ml_audit_replay")


def rng_for(*parts: object) -> random.Random:
    """The random generator of one trial: the session's seed and the trial's name."""
    return random.Random(":".join(map(str, (SEED, *parts))))


# ------------------------------------------------------------------------------ figures


@dataclasses.dataclass
class Trial:
    """One trial's outcome: what was acknowledged, what is missing, how it was run."""

    scenario: str
    mode: str
    next_writer: str
    acknowledged: int
    missing: list[str]
    description: str
    diagnosis: str = ""
    #: Records the next writer's replay refused (conflicts) or could not read.
    replay_issues: int = 0
    #: Stored rows of acknowledged predictions that are not as a live write stores them.
    bad_rows: int = 0

    def failure(self) -> str:
        return (
            f"[{self.scenario} / {self.mode} / next writer {self.next_writer}] "
            f"{len(self.missing)} of {self.acknowledged} acknowledged predictions missing "
            f"({self.description}; seed {SEED}); first missing: {self.missing[:3]}; "
            f"{self.replay_issues} conflicting or unreadable records in the replay; "
            f"{self.bad_rows} bad rows\n"
            f"{self.diagnosis}"
        )


#: Every trial of the session, for the table (see ``conftest.py``).
TRIALS_RUN: list[Trial] = []


def figures_table() -> str:
    """The table of figures: one row per (scenario, mode, next writer)."""
    rows: dict[tuple[str, str, str], list[int]] = {}
    for trial in TRIALS_RUN:
        row = rows.setdefault((trial.scenario, trial.mode, trial.next_writer), [0] * 5)
        row[0] += 1
        row[1] += trial.acknowledged
        row[2] += len(trial.missing)
        row[3] += trial.replay_issues
        row[4] += trial.bad_rows
    header = (
        *("scenario", "mode", "next writer", "trials"),
        *("acknowledged", "missing", "issues", "bad rows"),
    )
    lines = [
        f"ml_audit fault tests on PostgreSQL (seed {SEED})",
        "issues: records the next writer's replay refused (conflict) or could not read; bad "
        "rows: stored rows of acknowledged predictions whose content hash does not verify, "
        "without latency, with the e-mail feature unredacted or not 'success'",
    ]
    fmt = "{:<28} {:<16} {:<33} {:>6} {:>12} {:>8} {:>7} {:>8}"
    lines.append(fmt.format(*header))
    lines.append("-" * 124)
    for (scenario, mode, writer), counts in rows.items():
        lines.append(fmt.format(scenario, mode, writer, *counts))
    return "\n".join(lines) + "\n"


def details_table() -> str:
    """One line per trial (how it was killed), for the figures file."""
    return "\n".join(
        f"{t.scenario} / {t.mode} / {t.next_writer}: acknowledged {t.acknowledged}, "
        f"missing {len(t.missing)}, replay issues {t.replay_issues}, bad rows {t.bad_rows}; "
        f"{t.description}"
        for t in TRIALS_RUN
    )


def assert_no_losses(trials: Sequence[Trial]) -> None:
    """Fail with every lossy trial's diagnosis (after all trials ran and were counted)."""
    assert trials, "no trial ran"
    for trial in trials:
        assert trial.acknowledged > 0, f"nothing was acknowledged: {trial.description}"
    lossy = [t for t in trials if t.missing or t.replay_issues or t.bad_rows]
    if lossy:
        pytest.fail("\n\n".join(t.failure() for t in lossy), pytrace=False)


# ------------------------------------------------------------------------------ database


def _server_settings(url: str) -> dict[str, Any]:
    from tests.settings import database_from_url

    return database_from_url(url)


@dataclasses.dataclass(frozen=True)
class ScratchDatabase:
    """A fresh database on the server of ``DATABASE_URL``, migrated, for the whole session."""

    name: str
    user: str
    password: str
    host: str
    port: int

    def url(self, *, port: int | None = None) -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgres://{auth}@{self.host}:{port or self.port}/{self.name}"

    def connect(self, dbname: str | None = None) -> Any:
        import psycopg

        return psycopg.connect(
            dbname=dbname or self.name,
            user=self.user or None,
            password=self.password or None,
            host=self.host,
            port=self.port,
            autocommit=True,
            connect_timeout=10,
        )

    def missing(self, prediction_ids: Sequence[str]) -> list[str]:
        """The ids (in order) that have no row in ``ml_audit_predictionevent``."""
        if not prediction_ids:
            return []
        with self.connect() as connection:
            rows = connection.execute(
                "SELECT prediction_id FROM ml_audit_predictionevent WHERE prediction_id = ANY(%s)",
                (list(prediction_ids),),
            ).fetchall()
        found = {row[0] for row in rows}
        return [pid for pid in prediction_ids if pid not in found]


@contextlib.contextmanager
def scratch_database(url: str, workdir: Path) -> Iterator[ScratchDatabase]:
    """Create ``<name>_durability_<pid>`` next to ``url``'s database, migrate it, drop it."""
    settings = _server_settings(url)
    database = ScratchDatabase(
        name=f"{settings['NAME'] or 'ml_audit'}_durability_{os.getpid()}",
        user=settings["USER"] or "postgres",
        password=settings["PASSWORD"],
        host=settings["HOST"] or "127.0.0.1",
        port=int(settings["PORT"] or 5432),
    )

    def drop() -> None:
        with database.connect("postgres") as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')

    drop()
    with database.connect("postgres") as connection:
        connection.execute(f'CREATE DATABASE "{database.name}"')
    try:
        spool = workdir / "migrate-spool"
        done = run_child(
            ["-m", "django", "migrate", "--noinput", "-v", "0"],
            child_environment(database.url(), spool),
            timeout=MIGRATE_TIMEOUT,
        )
        if done.returncode != 0:
            pytest.fail(f"migrate failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
        yield database
    finally:
        drop()


# ------------------------------------------------------------------------------ children


def child_environment(
    db_url: str, spool_dir: Path, *, write_mode: str | None = None, fsync: bool = False
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENVIRONMENT}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    env["ML_AUDIT_DURABILITY_DB"] = db_url
    env["ML_AUDIT_DURABILITY_SPOOL"] = str(spool_dir)
    env.pop("ML_AUDIT_DURABILITY_WRITE_MODE", None)
    env.pop("ML_AUDIT_DURABILITY_JOURNAL_FSYNC", None)
    if write_mode:
        env["ML_AUDIT_DURABILITY_WRITE_MODE"] = write_mode
    if fsync:
        env["ML_AUDIT_DURABILITY_JOURNAL_FSYNC"] = "1"
    return env


def run_child(
    args: Sequence[str], env: dict[str, str], *, timeout: float, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in the repository root (``stdin``: its input); a timeout fails the test
    with its output."""
    command = [PYTHON, *args]
    try:
        return subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = "\n".join(
            part.decode("utf-8", "replace") if isinstance(part, bytes) else part
            for part in (exc.stdout, exc.stderr)
            if part
        )
        pytest.fail(f"{' '.join(command)} timed out after {timeout} s:\n{output}", pytrace=False)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def spool_listing(spool_dir: Path) -> str:
    """The files left in a spool directory, with their sizes and line counts."""
    try:
        entries = sorted(spool_dir.iterdir())
    except FileNotFoundError:
        return "(no spool directory)"
    if not entries:
        return "(empty)"
    described = []
    for entry in entries:
        data = entry.read_bytes() if entry.is_file() else b""
        lines = data.count(b"\n")
        described.append(f"{entry.name} ({len(data)} bytes, {lines} lines)")
    return ", ".join(described)


def spool_summary(spool_dir: Path) -> str:
    """Lines per kind of spool file, e.g. ``.journal 1 file/1539 lines``; "empty" if none."""
    kinds: dict[str, list[int]] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in spool_dir.iterdir():
            if entry.is_file():
                kind = kinds.setdefault(entry.suffix, [0, 0])
                kind[0] += 1
                kind[1] += entry.read_bytes().count(b"\n")
    if not kinds:
        return "empty"
    return ", ".join(
        f"{suffix} {files} file{'s' * (files != 1)}/{lines} lines"
        for suffix, (files, lines) in sorted(kinds.items())
    )


class Recorder:
    """A running ``recorder.py record`` child and the acknowledgements read from its stdout."""

    def __init__(self, env: dict[str, str], args: Sequence[str], log: Path) -> None:
        self.log = log
        self._log_file: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in finish()
        self.process = subprocess.Popen(
            [PYTHON, "-m", "tests.durability.recorder", "record", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
        )
        self.acks: list[str] = []
        self.first_ack_at: float | None = None
        self.torn: bytes = b""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="recorder-acks", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for line in stream:
            with self._changed:
                if line.endswith(b"\n"):
                    self.acks.append(line[:-1].decode())
                    if self.first_ack_at is None:
                        self.first_ack_at = time.monotonic()
                else:  # the child died in the middle of its acknowledgement: not one
                    self.torn = line
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def acknowledged(self) -> int:
        with self._changed:
            return len(self.acks)

    def wait_for_acks(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` acknowledgements are read (False: timeout or the child ended)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.acks) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive():
                    return False
                self._changed.wait(min(remaining, 0.05))
            return True

    def wait_for_kill_point(self, delay: float, cap: int) -> str:
        """Wait until ``delay`` seconds after the first acknowledgement or ``cap``
        acknowledgements, whichever comes first; which one it was."""
        if not self.wait_for_acks(1, CHILD_START_TIMEOUT):
            self.fail_to_start()
        assert self.first_ack_at is not None
        deadline = self.first_ack_at + delay
        with self._changed:
            while len(self.acks) < cap:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "delay"
                if not self._reader.is_alive():
                    return "child ended"
                self._changed.wait(min(remaining, 0.02))
        return "count"

    def fail_to_start(self) -> None:
        self.kill(signal.SIGKILL)
        self.finish()
        pytest.fail(
            f"the recorder acknowledged nothing within {CHILD_START_TIMEOUT} s "
            f"(exit {self.process.returncode}):\n{tail(self.log, 40)}",
            pytrace=False,
        )

    def kill(self, signum: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def finish(self, timeout: float = CHILD_EXIT_TIMEOUT) -> int:
        """Wait for the child to end (SIGKILL after ``timeout``) and read all its output."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.process.wait(10)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_file.close()
        return self.process.returncode

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.kill(signal.SIGKILL)
        self.finish()


def _next_writer_args(way: str) -> list[str]:
    if way == "writer":
        return ["-m", "tests.durability.recorder", "next-writer"]
    if way == "ml_audit_replay":
        # No --include-active: the files of a process that died are replayed without it.
        return ["-m", "django", "ml_audit_replay"]
    raise ValueError(way)  # pragma: no cover


def kill_next_writer(way: str, env: dict[str, str], delay: float, log: Path) -> str:
    """Start the next writer and ``kill -9`` it ``delay`` seconds later (if it is still
    running); what happened."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [PYTHON, *_next_writer_args(way)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            process.wait(delay)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
            return f"killed after {delay:.3f} s"
        finally:
            if process.poll() is None:  # pragma: no cover - only on an error above
                process.kill()
                process.wait(30)
    return f"finished before {delay:.3f} s (exit {process.returncode})"


@dataclasses.dataclass(frozen=True)
class NextWriterReport:
    """What the next writer said: its output (for diagnoses), and how many records its replay
    refused or could not read (conflicts, unreadable lines: a replay should have none)."""

    output: str
    issues: int


_REPLAY_SUMMARY = re.compile(r"(\d+) conflict\(s\), (\d+) unreadable")


def run_next_writer(way: str, env: dict[str, str]) -> NextWriterReport:
    """Start the next writer (see ``NEXT_WRITERS``) and wait for it."""
    done = run_child(_next_writer_args(way), env, timeout=NEXT_WRITER_TIMEOUT)
    output = f"next writer ({way}) exit {done.returncode}: {done.stdout.strip()}"
    if done.returncode != 0:
        output += f"\n{done.stderr[-3000:]}"
        return NextWriterReport(output, 1)
    if way == "writer":
        report = json.loads(done.stdout.strip().splitlines()[-1])
        issues = report["stats"]["conflicts"] + report["stats"]["dropped"]
        if not report["flushed"]:
            output += "\nforce_flush timed out"
            issues += 1
        return NextWriterReport(output, issues)
    match = _REPLAY_SUMMARY.search(done.stdout)
    return NextWriterReport(output, int(match[1]) + int(match[2]) if match else 0)


@dataclasses.dataclass(frozen=True)
class RowCheck:
    """Rows of acknowledged predictions that are not as a live write stores them."""

    bad: int
    report: str


def check_rows(env: dict[str, str], prediction_ids: Sequence[str]) -> RowCheck:
    """``recorder.py check`` on the rows of ``prediction_ids`` (see there)."""
    if not prediction_ids:
        return RowCheck(0, "nothing to check")
    done = run_child(
        ["-m", "tests.durability.recorder", "check"],
        env,
        timeout=NEXT_WRITER_TIMEOUT,
        stdin="\n".join(prediction_ids),
    )
    if done.returncode != 0:
        pytest.fail(f"the row check failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["checked"] != len(prediction_ids):  # pragma: no cover - a harness bug
        pytest.fail(f"checked {report['checked']} rows of {len(prediction_ids)}")
    return RowCheck(int(report["bad"]), done.stdout.strip())


def stored(acks: Sequence[str], missing: Sequence[str]) -> list[str]:
    """The acknowledged ids that are in the database."""
    absent = set(missing)
    return [pid for pid in acks if pid not in absent]


def check_acks(recorder: Recorder) -> list[str]:
    """The acknowledged ids; fails on a duplicate (the child prints each id once)."""
    acks = list(recorder.acks)
    assert len(set(acks)) == len(acks), "an acknowledged prediction_id was printed twice"
    return acks


# ------------------------------------------------------------------------------ TCP proxy


class TcpProxy:
    """Forwards connections from ``127.0.0.1:<port>`` to ``target``, until :meth:`cut`
    closes the listener and every forwarded connection (PostgreSQL is unreachable then)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._cut = threading.Event()
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._cut.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                if self._cut.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink), name="proxy-pump", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and break the open ones, at once."""
        self._cut.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._acceptor.join(5)
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(5)

    close = cut


# ------------------------------------------------------------------------------ gunicorn

_LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+) \((\d+)\)")


@functools.cache
def _gunicorn_options(executable: Path) -> tuple[str, ...]:
    """Options of this gunicorn version that keep it to its TCP port on 127.0.0.1: recent
    versions also open a control socket (in ``~/.gunicorn``) unless told not to."""
    done = subprocess.run(
        [str(executable), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return ("--no-control-socket",) if "--no-control-socket" in done.stdout else ()


class Gunicorn:
    """``gunicorn tests.durability.wsgi:application`` on 127.0.0.1 (a free port)."""

    def __init__(self, env: dict[str, str], log: Path, *, workers: int = 2) -> None:
        executable = Path(PYTHON).parent / "gunicorn"
        if not executable.exists():
            pytest.fail(
                f"{executable} not found: install the dev extra (pip install -e '.[dev]')",
                pytrace=False,
            )
        self.log = log
        self._log_file: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                str(executable),
                "--bind",
                "127.0.0.1:0",
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--preload",
                "--timeout",
                "30",
                "--graceful-timeout",
                "30",
                *_gunicorn_options(executable),
                "tests.durability.wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.port = 0

    def wait_listening(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log.read_bytes())
            if match:
                self.port = int(match[1])
                return self.port
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"gunicorn did not start:\n{tail(self.log, 40)}", pytrace=False)

    def workers(self) -> list[int]:
        """The pids of the master's live children."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces and parentheses.
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == self.process.pid and fields[0] != "Z":
                found.append(int(entry.name))
        return sorted(found)

    def wait_workers(self, count: int, exclude: int = 0, timeout: float = 60.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [pid for pid in self.workers() if pid != exclude]
            if len(pids) >= count:
                return pids
            time.sleep(0.05)
        pytest.fail(f"gunicorn has no {count} workers:\n{tail(self.log, 40)}", pytrace=False)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM to the master (graceful), SIGKILL after ``timeout``; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in self.workers():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait(10)
                self._log_file.close()
                return None
        self._log_file.close()
        return self.process.returncode


class HttpClient:
    """Threads posting predictions to the server; the ids of the 200 responses."""

    def __init__(self, port: int, *, threads: int = 2) -> None:
        self.port = port
        self.acks: list[str] = []
        self.served_by: dict[int, int] = {}
        self.last_pid = 0
        self.errors = 0
        self.non_200 = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), name=f"client-{n}", daemon=True)
            for n in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            body = json.dumps(
                {"client": n, "i": i, "amount": 12.5, "email": "jane.doe@example.com"}
            ).encode()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request(
                    "POST", "/score/", body=body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                data = response.read()
                prediction_id = response.getheader("X-Prediction-Id")
                status = response.status
            except (OSError, http.client.HTTPException):
                with self._lock:
                    self.errors += 1
                time.sleep(0.01)
                continue
            finally:
                connection.close()
            with self._lock:
                if status == 200 and prediction_id:
                    self.acks.append(prediction_id)
                    pid = int(json.loads(data)["pid"])
                    self.served_by[pid] = self.served_by.get(pid, 0) + 1
                    self.last_pid = pid
                else:
                    self.non_200 += 1

    def acknowledged(self) -> int:
        with self._lock:
            return len(self.acks)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


# ------------------------------------------------------------------------------ trials


@dataclasses.dataclass(frozen=True)
class Mode:
    """How a child records: ``prediction_span(mode=span_mode)`` under ``WRITE_MODE`` =
    ``write_mode`` (None: the default) and ``JOURNAL_FSYNC`` = ``fsync``."""

    label: str
    span_mode: str
    write_mode: str | None = None
    fsync: bool = False


JOURNAL = Mode("journal", "journal")
JOURNAL_FSYNC = Mode("journal+fsync", "journal", fsync=True)
SYNC = Mode("sync", "sync")
#: ``prediction_span(mode="batch")`` alone is journalled under the default WRITE_MODE (the
#: processor's mode decides between the two queued modes): the old batch mode is both.
BATCH = Mode("batch", "batch", write_mode="batch")


def signal_trial(
    database: ScratchDatabase,
    workdir: Path,
    *,
    scenario: str,
    mode: Mode,
    trial: int,
    way: str,
    signum: int,
    sigterm: str = "default",
    expected_status: int,
) -> Trial:
    """Record in a child until a random point, send it ``signum``, run the next writer, count
    the acknowledged predictions that are missing."""
    rng = rng_for(scenario, mode.label, sigterm, trial)
    delay = rng.uniform(0.0, MAX_DELAY)
    cap = rng.randint(max(1, MAX_ACKS // 10), MAX_ACKS)
    directory = workdir / f"{mode.label}-{sigterm}-{trial}"
    directory.mkdir(parents=True)
    spool = directory / "spool"
    env = child_environment(database.url(), spool, write_mode=mode.write_mode, fsync=mode.fsync)
    log = directory / "recorder.log"
    with Recorder(env, ["--mode", mode.span_mode, "--sigterm", sigterm], log) as recorder:
        reason = recorder.wait_for_kill_point(delay, cap)
        recorder.kill(signum)
        status = recorder.finish()
    acks = check_acks(recorder)
    at_kill = spool_listing(spool)
    summary = spool_summary(spool)
    assert status == expected_status, (
        f"the recorder exited with {status}, not {expected_status}:\n{tail(log, 40)}"
    )
    report = run_next_writer(way, env)
    missing = database.missing(acks)
    rows = check_rows(env, stored(acks, missing))
    result = Trial(
        scenario=scenario,
        mode=mode.label,
        next_writer=way,
        acknowledged=len(acks),
        missing=missing,
        description=(
            f"trial {trial}: {signal.Signals(signum).name} at the {reason} "
            f"(delay {delay:.3f} s, cap {cap}), exit {status}; spool then: {summary}"
        ),
        diagnosis=(
            f"spool at the kill: {at_kill}\nspool after the next writer: "
            f"{spool_listing(spool)}\n{report.output}\nrow check: {rows.report}\n"
            f"recorder log:\n{tail(log)}"
        ),
        replay_issues=report.issues,
        bad_rows=rows.bad,
    )
    TRIALS_RUN.append(result)
    return result
