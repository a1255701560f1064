"""The rich admin in a real headless Chromium, driven over the DevTools protocol.

Skipped unless ``ML_AUDIT_CHROMIUM`` names a Chromium binary (``.ci/browser.sh`` sets it).
Chromium is driven through ``--remote-debugging-pipe`` (JSON messages ending in NUL on file
descriptors 3 and 4), so no WebSocket client or browser-automation package is needed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse
from pytest_django.live_server_helper import LiveServer

from ml_audit.models import AccessLog
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event

CHROMIUM = os.environ.get("ML_AUDIT_CHROMIUM", "")
TRACE_TEMPLATE = "http://127.0.0.1:6006/redirects/traces/{trace_id}"
PII_EMAIL = "jane.doe.pii@example.com"
PASSWORD = "browser-test-pw-42"
IMPORTANCES = {"age": 0.31, "income": -0.52, "tenure": 0.12, "num_claims": -0.08, "region": 0.04}
TIMEOUT = 30.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and os.access(CHROMIUM, os.X_OK)),
        reason="set ML_AUDIT_CHROMIUM to a Chromium binary (run .ci/browser.sh)",
    ),
]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
    "--window-size=1280,1024",
]


def _above_four(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Chromium:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, user_data_dir: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Keep the child's ends clear of 3 and 4, or the dup2 calls below would clobber them.
        to_chrome_r, from_chrome_w = _above_four(to_chrome_r), _above_four(from_chrome_w)
        # Chromium reads commands from fd 3 and writes replies to fd 4. A tiny Python trampoline
        # places the pipe ends there (no preexec_fn: the live server thread is already running).
        trampoline = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        command = [binary, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"]
        self._process = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(to_chrome_r), str(from_chrome_w), *command],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.session_id = ""

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may already be gone
            self.send("Browser.close", timeout=5)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self._from_chrome], [], [], remaining)
            if ready:
                chunk = os.read(self._from_chrome, 65536)
                if not chunk:
                    raise RuntimeError(f"Chromium exited (code {self._process.poll()})")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session_id and not method.startswith(("Target.", "Browser.")):
            command["sessionId"] = self.session_id
        os.write(self._to_chrome, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") != self._next_id:
                continue  # an event, or a late reply
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message.get("result", {})
            return result

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self.session_id = attached["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")

    def evaluate(self, expression: str) -> Any:
        reply = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression!r}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression):
                    return
            except RuntimeError:
                pass  # the page is navigating: its execution context is gone
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {expression!r}")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def log_in_to_admin(self, base_url: str, next_path: str, username: str, password: str) -> None:
        """Log in through the admin's real login form; wait until ``next_path`` has loaded."""
        self.navigate(f"{base_url}/admin/login/?next={next_path}")
        self.evaluate(
            f"document.querySelector('#id_username').value = {json.dumps(username)};"
            f"document.querySelector('#id_password').value = {json.dumps(password)};"
            "document.querySelector('#login-form [type=submit]').click(); true"
        )
        self.wait_for(
            f"location.pathname === {json.dumps(next_path)} && document.readyState === 'complete'"
        )

    def screenshot(self, path: Path) -> Path:
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": 1280,
                "height": min(max(height, 800), 4000),
                "deviceScaleFactor": 1,
                "mobile": False,
            },
        )
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    chromium = Chromium(CHROMIUM, tmp_path / "chromium-profile")
    try:
        chromium.open_page()
        yield chromium
    finally:
        chromium.close()


@pytest.mark.django_db(transaction=True)
def test_prediction_detail_in_chromium(
    live_server: LiveServer, browser: Chromium, tmp_path: Path
) -> None:
    User.objects.create_superuser("auditor", "auditor@example.com", PASSWORD)
    event = record_prediction_event(
        model_name="fraud_detector",
        model_version="1.0.0",
        features={"age": 42, "income": 100_000, "email": PII_EMAIL},
        output={"score": 0.87, "is_fraud": True},
        decision_outcome="flagged",
        confidence=0.87,
        actor=ActorPayload(actor_type="user", actor_id="7", tenant_id="acme"),
        environment="prod",
    )
    assert event.trace_id
    attach_explanation(event, "shap", {"feature_importances": IMPORTANCES}, "browser check")
    change = reverse("admin:ml_audit_predictionevent_change", args=[event.pk])
    expected_trace = TRACE_TEMPLATE.format(trace_id=event.trace_id)

    # The live server thread reads the same settings object, so the override reaches it.
    with override_settings(ML_AUDIT={"TRACE_URL_TEMPLATE": TRACE_TEMPLATE}):
        # Log in through the real admin login form.
        browser.log_in_to_admin(live_server.url, change, "auditor", PASSWORD)
        page = browser.evaluate(
            """(() => {
                const svg = document.querySelector('svg.ml-audit-chart');
                const link = document.querySelector(
                    'a[href^="http://127.0.0.1:6006/redirects/traces/"]');
                return {
                    title: document.title,
                    svg: svg !== null,
                    svgWidth: svg ? svg.getBoundingClientRect().width : 0,
                    bars: svg ? svg.querySelectorAll('rect.ml-audit-bar').length : 0,
                    negative: svg ? svg.querySelectorAll('rect.ml-audit-negative').length : 0,
                    labels: svg ? Array.from(svg.querySelectorAll('.ml-audit-label'),
                                             e => e.textContent) : [],
                    href: link ? link.href : null,
                    html: document.documentElement.outerHTML,
                    text: document.body.innerText,
                };
            })()"""
        )
        directory = Path(os.environ.get("ML_AUDIT_SCREENSHOT_DIR") or tmp_path)
        shot = browser.screenshot(directory / "admin-prediction.png")

    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 0
    assert page["svg"], page["title"]
    assert page["svgWidth"] > 0
    assert page["bars"] == len(IMPORTANCES)
    assert page["negative"] == 2
    assert sorted(page["labels"]) == sorted(IMPORTANCES)
    assert page["href"] == expected_trace
    assert PII_EMAIL not in page["html"]
    assert PII_EMAIL not in page["text"]
    assert "jane.doe" not in page["html"]
    # The page the browser rendered was access-logged as an API read is.
    reads = AccessLog.objects.filter(endpoint="admin-prediction-detail")
    assert [(row.username, row.status_code, row.returned_ids) for row in reads] == [
        ("auditor", 200, [str(event.pk)])
    ]


SEAL_SETTINGS = {"SEAL_KEY": "k" * 40, "SEAL_KEY_ID": "browser-1", "SEAL_LAG_SECONDS": 0}


@pytest.mark.django_db(transaction=True)
def test_trail_integrity_and_a_sealed_prediction_in_chromium(
    live_server: LiveServer, browser: Chromium, tmp_path: Path
) -> None:
    import datetime as dt

    from django.utils import timezone

    from ml_audit.retention import place_hold, release_hold
    from ml_audit.sealing import seal_pending

    User.objects.create_superuser("auditor", "auditor@example.com", PASSWORD)
    directory = Path(os.environ.get("ML_AUDIT_SCREENSHOT_DIR") or tmp_path)
    # The live server thread reads the same settings object, so the override reaches it.
    with override_settings(ML_AUDIT=SEAL_SETTINGS):
        events = [
            record_prediction_event(
                model_name="fraud_detector",
                model_version="1.0.0",
                features={"age": 30 + i, "income": 1000 * i},
                output={"score": i / 10},
                decision_outcome="flagged" if i % 2 else "clean",
                confidence=0.5,
                actor=ActorPayload(actor_type="user", actor_id=str(i), tenant_id="acme"),
            )
            for i in range(6)
        ]
        attach_explanation(events[0], "shap", {"feature_importances": IMPORTANCES}, "why")
        for _ in range(3):  # three seals: two rows each, then the rest
            seal_pending(max_rows=2, now=timezone.now() + dt.timedelta(seconds=1))
        hold = place_hold(
            reason="Subpoena 2026-17", created_by="alice", reference="CASE-17", tenant_id="acme"
        )
        old = place_hold(reason="Review", created_by="bob", reference="CASE-9", model_name="x")
        release_hold(old, reason="Closed", created_by="bob")

        trail = reverse("admin:ml_audit_seal_changelist")
        browser.log_in_to_admin(live_server.url, trail, "auditor", PASSWORD)
        # Start a verification of the last day with the page's own button (a POST with its
        # CSRF token), and wait for the report.
        browser.evaluate("document.querySelector('#ml-audit-verify-form [type=submit]').click()")
        browser.wait_for(
            "document.querySelector('#ml-audit-report') !== null && "
            "document.readyState === 'complete'"
        )
        trail_page = browser.evaluate(
            """(() => ({
                title: document.querySelector('h1').textContent,
                report: document.querySelector('#ml-audit-report').dataset.ok,
                verdict: document.querySelector('#ml-audit-report .ml-audit-verdict').innerText,
                seals: document.querySelectorAll('#result_list tbody tr').length,
                heads: Array.from(document.querySelectorAll('#result_list .ml-audit-check'),
                                  e => e.innerText),
                holds: document.querySelector('#ml-audit-holds').innerText,
            }))()"""
        )
        trail_shot = browser.screenshot(directory / "admin-trail-integrity.png")

        change = reverse("admin:ml_audit_predictionevent_change", args=[events[3].pk])
        browser.navigate(f"{live_server.url}{change}")
        seal_page = browser.evaluate(
            """(() => {
                const panel = document.querySelector('.ml-audit-seal');
                return {
                    verdict: panel ? panel.dataset.verdict : null,
                    text: panel ? panel.innerText : '',
                    link: panel ? panel.querySelector('a').getAttribute('href') : null,
                    checks: panel ? panel.querySelectorAll('.ml-audit-check-row').length : 0,
                };
            })()"""
        )
        prediction_shot = browser.screenshot(directory / "admin-prediction-seal.png")

    print(f"screenshots: {trail_shot}, {prediction_shot}")
    assert trail_shot.stat().st_size > 0
    assert prediction_shot.stat().st_size > 0
    assert trail_page["title"] == "Trail integrity"
    assert trail_page["report"] == "true"
    assert trail_page["verdict"].startswith("No tampering found")
    assert trail_page["seals"] == 3
    assert trail_page["heads"] == ["✓ verifies"] * 3
    assert "CASE-17" in trail_page["holds"]
    assert "CASE-9" in trail_page["holds"]
    assert hold.reference == "CASE-17"
    assert seal_page["verdict"] == "ok"
    assert "Verifies: sealed in seal" in seal_page["text"]
    assert seal_page["checks"] == 6
    assert seal_page["link"].startswith("/admin/ml_audit/seal/")
