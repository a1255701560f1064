"""What ``manage.py demo`` prints: live URLs only while it serves, the way in among them.

``--no-serve`` stops the server, so it prints no URL of it but the command that serves; run,
that command serves and prints where to look, the API's login page included, which answers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from demo_site.management.commands.demo import API_PATH

from tests.demo.test_demo_command import run_demo

PASSWORD = "pw-for-the-serving-test"


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str]) -> Iterator[list[str]]:
    """Run ``command`` until it says it serves; yield what it printed until then."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while not (seen and seen[-1].startswith("Serving on ")):
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError("the demo did not start serving:\n" + "".join(seen))
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
        yield seen
    finally:
        process.terminate()
        process.wait(timeout=30)
        stdout.close()


def printed(lines: list[str], label: str) -> str:
    """The value of the ``label`` line of "Where to look"."""
    line = next(line.strip() for line in lines if line.strip().startswith(label + " "))
    return line.removeprefix(label).strip()


def test_no_serve_prints_no_url_but_the_command_that_serves(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    result = run_demo(db, "--count", "3", "--password", PASSWORD)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "http://" not in result.stdout  # the server has stopped: no URL of it
    assert "Where to look" not in result.stdout
    assert "The server has stopped (--no-serve)" in result.stdout
    assert f"password {PASSWORD!r}" in result.stdout
    assert f"database  {db}" in result.stdout
    *_, announce, shown = result.stdout.strip().splitlines()
    assert announce == "To serve the demo and look around, run it without --no-serve:"
    words = shlex.split(shown)
    assert "--no-serve" not in words
    assert words[words.index("--password") + 1] == PASSWORD
    assert f"ML_AUDIT_DEMO_DB={db}" in words  # the same database

    # Run it as printed (our Python for "python"): it serves and says where to look.
    env = {**os.environ}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "python"
    with serving([sys.executable, *words[1:]], env) as lines:
        base_url = lines[-1].split()[2].rstrip("/")
        output = "".join(lines)
        assert "Where to look" in output
        assert printed(lines, "REST API") == f"{base_url}{API_PATH}"
        login = printed(lines, "log in").split()[0]
        assert login == f"{base_url}/api-auth/login/?next={API_PATH}"
        assert f"password {PASSWORD!r}" in output
        # The printed way in answers: DRF's login form, for the API.
        with urllib.request.urlopen(login, timeout=30) as response:
            page = response.read().decode()
        assert response.status == 200
        assert 'name="username"' in page
        assert 'name="password"' in page
