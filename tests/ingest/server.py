"""An ingest server in a process of its own: gunicorn on a free port of 127.0.0.1.

Used by the real-sender tests and by ``benchmarks/bench_ingest_http.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+) \(\d+\)")


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """The URL of a Django database's settings (``tests.settings.database_from_url`` reads it)."""
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite://{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(settings_dict['NAME'])}"


def server_environment(db_url: str, ml_audit: str = "{}") -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "PYTHONSTARTUP")
    }
    env["ML_AUDIT_INGEST_DB"] = db_url
    env["ML_AUDIT_INGEST_SETTINGS"] = ml_audit
    env["DJANGO_SETTINGS_MODULE"] = "tests.ingest.server_settings"
    env["PYTHONPATH"] = str(ROOT)
    return env


def migrate(db_url: str) -> None:
    """Migrate the server's database (a fresh SQLite file, say) as the server would see it."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=server_environment(db_url),
        check=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def gunicorn(
    db_url: str, log: Path, *, workers: int = 2, ml_audit: str = "{}", threads: int = 1
) -> Iterator[str]:
    """Serve the endpoint; yield its URL (``http://127.0.0.1:<port>/otlp/v1/traces``)."""
    executable = Path(sys.executable).parent / "gunicorn"
    if not executable.exists():
        raise RuntimeError(f"{executable} not found: install the dev extra")
    help_text = subprocess.run(
        [str(executable), "--help"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    options = ["--no-control-socket"] if "--no-control-socket" in help_text else []
    log_file: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            str(executable),
            "--bind",
            "127.0.0.1:0",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "120",
            *options,
            "tests.ingest.server_wsgi:application",
        ],
        cwd=ROOT,
        env=server_environment(db_url, ml_audit),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        port = 0
        while time.monotonic() < deadline and process.poll() is None:
            match = _LISTENING.search(log.read_bytes())
            if match:
                port = int(match[1])
                break
            time.sleep(0.05)
        if not port:
            raise RuntimeError("gunicorn did not start:\n" + log.read_text(errors="replace"))
        yield f"http://127.0.0.1:{port}/otlp/v1/traces"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log_file.close()
