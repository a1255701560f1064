"""The demo, as a newcomer meets it: ``manage.py demo`` serving, its admin in headless Chromium.

Starts the README's demo command (with a small count and a fixed password) as a real server,
logs in as the printed auditor through the admin's login form, opens a recorded prediction
and checks that it is redacted and explained; keeps a screenshot next to the admin test's.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.test_admin_browser import CHROMIUM, Chromium
from tests.demo.test_demo_command import demo_command

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and os.access(CHROMIUM, os.X_OK)),
        reason="set ML_AUDIT_CHROMIUM to a Chromium binary (run .ci/browser.sh)",
    ),
]

PASSWORD = "demo-browser-pw"


@pytest.fixture
def demo_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The demo command, serving; yields its URL and its database file."""
    db = tmp_path / "demo.sqlite3"
    command, env = demo_command(db, "--count", "25", "--password", PASSWORD)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while not (seen and seen[-1].startswith("Serving on ")):
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("the demo did not start serving:\n" + "".join(seen))
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
        # "Serving on http://127.0.0.1:<port>/ - press Ctrl-C to stop."
        yield seen[-1].split()[2].rstrip("/"), db
    finally:
        process.terminate()
        process.wait(timeout=30)
        stdout.close()


def test_demo_admin_shows_a_redacted_explained_prediction(
    demo_site: tuple[str, Path], tmp_path: Path
) -> None:
    url, db = demo_site
    with sqlite3.connect(db) as conn:
        (event_id,) = conn.execute(
            "SELECT id FROM ml_audit_predictionevent WHERE status = 'success' "
            "AND features LIKE '%notes%' LIMIT 1"
        ).fetchone()
    change = f"/admin/ml_audit/predictionevent/{uuid.UUID(event_id)}/change/"
    browser = Chromium(CHROMIUM, tmp_path / "chromium-profile")
    try:
        browser.open_page()
        browser.log_in_to_admin(url, change, "auditor", PASSWORD)
        page = browser.evaluate(
            """(() => {
                const svg = document.querySelector('svg.ml-audit-chart');
                return {
                    bars: svg ? svg.querySelectorAll('rect.ml-audit-bar').length : 0,
                    labels: svg ? Array.from(svg.querySelectorAll('.ml-audit-label'),
                                             e => e.textContent) : [],
                    html: document.documentElement.outerHTML,
                    text: document.body.innerText,
                    styled: getComputedStyle(document.body).fontFamily !== '',
                    css: Array.from(document.styleSheets).length,
                };
            })()"""
        )
        directory = Path(os.environ.get("ML_AUDIT_SCREENSHOT_DIR") or tmp_path)
        shot = browser.screenshot(directory / "demo-admin-prediction.png")
    finally:
        browser.close()
    print(f"screenshot: {shot}")
    assert page["bars"] == 6, page["text"][:2000]
    assert "late_payments_12m" in page["labels"]
    assert page["css"] > 0  # the admin's stylesheets are served
    assert "@example.com" not in page["html"]
    assert "4111 1111 1111 1111" not in page["html"]
    assert "*****" in page["text"]
    assert "credit_risk" in page["text"]
