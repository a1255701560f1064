"""A real Arize Phoenix server for the end-to-end APM tests (``pytest -m apm``).

Phoenix lives in its own virtualenv (it is large and pins its own dependencies); the
interpreter to start it with comes from ``ML_AUDIT_PHOENIX_PYTHON``, which ``.ci/apm.sh`` sets.
Phoenix's OTLP/gRPC listener binds every interface, so run these tests in a private network
namespace, as ``.ci/apm.sh`` does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PYTHON_ENV = "ML_AUDIT_PHOENIX_PYTHON"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
# Variables of the calling environment that could point Phoenix at another database, turn on
# authentication, or make it export its own telemetry somewhere: none of them reach it.
SCRUBBED_PREFIXES = ("PHOENIX_", "OTEL_")


@dataclass(frozen=True)
class PhoenixServer:
    """A running Phoenix: ``url`` is its base URL, ``log`` the file its output goes to."""

    url: str
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError as exc:
        return f"(could not read the log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it and any children), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def phoenix() -> Iterator[PhoenixServer]:
    """Start Phoenix on free loopback ports for the session; stop it (and its children) after."""
    python = os.environ.get(PYTHON_ENV, "")
    if not python:
        pytest.fail(
            f"{PYTHON_ENV} is not set: it must name the python of a virtualenv with "
            "arize-phoenix installed. Run the APM tests with `bash .ci/apm.sh PYTHON`, which "
            "installs Phoenix and sets it.",
            pytrace=False,
        )
    if not Path(python).is_file():
        pytest.fail(f"{PYTHON_ENV}={python!r} is not a file", pytrace=False)

    workdir = Path(tempfile.mkdtemp(prefix="ml-audit-phoenix-"))
    log_path = workdir / "phoenix.log"
    port, grpc_port = _free_port(), _free_port()
    while grpc_port == port:
        grpc_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_WORKING_DIR=str(workdir / "data"),
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        PYTHONUNBUFFERED="1",
    )
    base = f"http://127.0.0.1:{port}"
    print(f"\nStarting Phoenix at {base} (OTLP/gRPC port {grpc_port}); log: {log_path}")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [python, "-m", "phoenix.server.main", "serve"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that _stop reaches children
        )
    try:
        started = time.monotonic()
        deadline = started + START_TIMEOUT_S
        while not _answers(f"{base}/healthz"):
            if process.poll() is not None:
                pytest.fail(
                    f"Phoenix exited with code {process.returncode} before answering; "
                    f"log: {log_path}\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Phoenix did not answer {base}/healthz within {START_TIMEOUT_S:.0f} s; "
                    f"log: {log_path}\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.25)
        print(f"Phoenix answered after {time.monotonic() - started:.1f} s")
        yield PhoenixServer(url=base, log=log_path)
    finally:
        _stop(process)
        shutil.rmtree(workdir / "data", ignore_errors=True)  # the log stays for reading
        print(f"\nPhoenix stopped (exit code {process.returncode}); log: {log_path}")
