"""The demo, as a newcomer meets it: ``manage.py demo`` serving, its admin in headless Chromium.

Starts the README's demo command (with a small count and a fixed password) as a real server,
logs in as the printed auditor through the admin's login form, opens a recorded prediction
and checks that it is redacted and explained, then the model version's quality page (its SVG
chart over the weeks the demo recorded) and an applicant's printable subject report; keeps
screenshots next to the admin test's (``demo-admin-prediction.png``, ``demo-quality.png``,
``demo-subject-report.png``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
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


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The demo command, serving (one for the module); yields its URL and its database file."""
    db = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
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


def test_demo_quality_page_charts_the_weeks_with_outcomes(
    demo_site: tuple[str, Path], tmp_path: Path
) -> None:
    url, db = demo_site
    with sqlite3.connect(db) as conn:
        (model_id,) = conn.execute(
            "SELECT id FROM ml_audit_modelversion WHERE model_name = 'credit_risk'"
        ).fetchone()
        weeks_with_outcomes = conn.execute(
            "SELECT COUNT(DISTINCT date(p.timestamp, 'weekday 0', '-6 days')) "
            "FROM ml_audit_outcome o JOIN ml_audit_predictionevent p ON p.id = o.prediction_id"
        ).fetchone()[0]
    quality = f"/admin/ml_audit/outcome/quality/{uuid.UUID(model_id)}/"
    browser = Chromium(CHROMIUM, tmp_path / "chromium-profile")
    try:
        browser.open_page()
        browser.log_in_to_admin(url, quality, "auditor", PASSWORD)
        page = browser.evaluate(
            """(() => {
                const svg = document.querySelector('svg.ml-audit-chart');
                const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
                return {
                    title: document.querySelector('h1') ? document.querySelector('h1')
                        .textContent : '',
                    charts: document.querySelectorAll('svg.ml-audit-chart').length,
                    accuracy: svg ? svg.querySelectorAll('circle.ml-audit-point.ml-audit-accuracy')
                        .length : 0,
                    lines: svg ? svg.querySelectorAll('polyline.ml-audit-line').length : 0,
                    bars: svg ? svg.querySelectorAll('rect.ml-audit-bar').length : 0,
                    width: box.width,
                    height: box.height,
                    rows: document.querySelectorAll('table tbody tr').length,
                    text: document.body.innerText,
                };
            })()"""
        )
        directory = Path(os.environ.get("ML_AUDIT_SCREENSHOT_DIR") or tmp_path)
        shot = browser.screenshot(directory / "demo-quality.png")
    finally:
        browser.close()
    print(f"screenshot: {shot}")
    assert page["title"] == "Quality of credit_risk logreg-1.0.0", page["text"][:2000]
    assert page["charts"] >= 1
    assert weeks_with_outcomes >= 3  # the demo's earlier weeks
    assert page["accuracy"] == weeks_with_outcomes  # a point per week with outcomes
    assert page["lines"] >= 1
    assert page["bars"] >= weeks_with_outcomes
    assert page["width"] > 300
    assert page["height"] > 100
    assert page["rows"] >= weeks_with_outcomes  # the table: a row per week


def test_demo_subject_report_page(demo_site: tuple[str, Path], tmp_path: Path) -> None:
    url, db = demo_site
    with sqlite3.connect(db) as conn:
        # An applicant whose referral an officer overrode, with the most decisions.
        (ref, decisions) = conn.execute(
            "SELECT p.subject_ref, (SELECT COUNT(*) FROM ml_audit_predictionevent q "
            "WHERE q.subject_ref = p.subject_ref) AS n FROM ml_audit_review r "
            "JOIN ml_audit_predictionevent p ON p.id = r.prediction_id "
            "WHERE r.action = 'override' ORDER BY n DESC, p.subject_ref LIMIT 1"
        ).fetchone()
    report = f"/api/ml-audit/subjects/{ref}/report/"
    browser = Chromium(CHROMIUM, tmp_path / "chromium-profile")
    try:
        browser.open_page()
        # The admin's session signs the browser in to the API; a browser asks for text/html.
        browser.log_in_to_admin(url, report, "auditor", PASSWORD)
        page = browser.evaluate(
            """(() => ({
                contentType: document.contentType,
                h1: document.querySelector('h1').textContent,
                decisions: document.querySelectorAll('section.decision').length,
                reasons: Array.from(document.querySelectorAll('ol.reasons li'),
                                    e => e.textContent.replace(/\\s+/g, ' ').trim()),
                changed: document.querySelectorAll('.changed').length,
                text: document.body.innerText,
                html: document.documentElement.outerHTML,
            }))()"""
        )
        directory = Path(os.environ.get("ML_AUDIT_SCREENSHOT_DIR") or tmp_path)
        shot = browser.screenshot(directory / "demo-subject-report.png")
    finally:
        browser.close()
    print(f"screenshot: {shot}")
    assert page["contentType"] == "text/html"
    assert page["h1"] == "Automated decisions about one person"
    assert page["decisions"] == decisions
    assert ref in page["text"]
    assert page["reasons"], page["text"][:3000]
    assert all(re.fullmatch(r".+ \(R0[1-6]\)", reason) for reason in page["reasons"])
    assert page["changed"] >= 1  # the officer's override
    assert "(changed by a person)" in page["text"]
    for identifier in ("APP-", "HIST-", "@example.com"):
        assert identifier not in page["html"]
