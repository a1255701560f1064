"""A data subject's report as a person sees it: the API's HTML page in headless Chromium, and
the command's HTML file rendered by Chromium's ``--dump-dom``.

Skipped unless ``ML_AUDIT_CHROMIUM`` names a Chromium binary (``.ci/browser.sh`` sets it);
the screenshot ``subject-report.png`` goes to ``ML_AUDIT_SCREENSHOT_DIR``.
"""

from __future__ import annotations

import os
import subprocess
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.urls import reverse
from pytest_django.live_server_helper import LiveServer

from ml_audit.models import AccessLog
from ml_audit.subjects.keys import clear_cache
from tests.browser.test_admin_browser import CHROMIUM, FLAGS, Chromium
from tests.reports.helpers import build_history, settings_with

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and os.access(CHROMIUM, os.X_OK)),
        reason="set ML_AUDIT_CHROMIUM to a Chromium binary (run .ci/browser.sh)",
    ),
]

PASSWORD = "subject-report-pw-42"
REASONS = [
    "Debt is high relative to income",
    "Income is too low for the amount asked",
    "Payments were late in the past year",
]


@pytest.fixture
def subject_settings(settings: Any) -> None:
    # The live server thread reads the same settings object.
    settings.ML_AUDIT = settings_with()
    clear_cache()


@pytest.mark.django_db(transaction=True)
def test_the_report_page_in_chromium(
    live_server: LiveServer, subject_settings: None, tmp_path: Path
) -> None:
    officer = User.objects.create_user("officer", password=PASSWORD, is_staff=True)
    for codename in ("view_predictionevent", "view_review", "view_outcome"):
        officer.user_permissions.add(Permission.objects.get(codename=codename))
    history = build_history()
    path = reverse("ml_audit_api:subject-report", args=[history.ref])

    browser = Chromium(CHROMIUM, tmp_path / "chromium-profile")
    try:
        browser.open_page()
        # Signed in through the admin's form; the browser asks for text/html, as any does.
        browser.log_in_to_admin(live_server.url, path, "officer", PASSWORD)
        page = browser.evaluate(
            """(() => ({
                title: document.title,
                contentType: document.contentType,
                h1: document.querySelector('h1').textContent,
                decisions: Array.from(document.querySelectorAll('section.decision h2'),
                                      e => e.textContent.replace(/\\s+/g, ' ').trim()),
                reasons: Array.from(document.querySelectorAll('ol.reasons li'),
                                    e => e.textContent.replace(/\\s+/g, ' ').trim()),
                text: document.body.innerText,
                html: document.documentElement.outerHTML,
                resources: performance.getEntriesByType('resource').length,
                width: document.querySelector('main').getBoundingClientRect().width,
            }))()"""
        )
        directory = Path(os.environ.get("ML_AUDIT_SCREENSHOT_DIR") or tmp_path)
        shot = browser.screenshot(directory / "subject-report.png")
        # The print stylesheet: a decision is not split across pages.
        browser.send("Emulation.setEmulatedMedia", {"media": "print"})
        printed = browser.evaluate(
            "getComputedStyle(document.querySelector('section.decision')).breakInside"
        )
    finally:
        browser.close()

    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 0
    assert page["contentType"] == "text/html"
    assert page["title"] == page["h1"] == "Automated decisions about one person"
    assert page["decisions"] == ["Decision 1: approved", "Decision 2: approved"]
    assert page["reasons"] == [
        f"{text} ({code})" for text, code in zip(REASONS, ["R01", "R02", "R03"], strict=False)
    ]
    for words in (
        "approved (changed by a person)",
        "Reason: Income proof supplied.",
        "Observed outcome: defaulted",
        "No person has reviewed this decision.",
        history.ref,
    ):
        assert words in page["text"], words
    assert "jane@example.com" not in page["html"]
    assert page["resources"] == 0  # nothing fetched: no stylesheet, script, font or image
    assert page["width"] > 300
    assert printed == "avoid"
    # The read the browser made was access-logged with the decisions it returned.
    [row] = AccessLog.objects.filter(endpoint="subjects-report")
    assert (row.username, row.status_code) == ("officer", 200)
    assert row.returned_ids == [str(history.declined.pk), str(history.approved.pk)]


@pytest.mark.django_db
def test_the_commands_html_file_renders_in_chromium(subject_settings: None, tmp_path: Path) -> None:
    build_history()
    target = tmp_path / "subject-report.html"
    call_command(
        "ml_audit_subject_report",
        "--subject",
        "applicant-1",
        "--tenant",
        "acme",
        "--format",
        "html",
        "--output",
        str(target),
        stderr=StringIO(),
    )

    flags = [flag for flag in FLAGS if flag != "--remote-debugging-pipe"]
    dom = subprocess.run(
        [
            CHROMIUM,
            *flags,
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            target.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout

    assert "<h1>Automated decisions about one person</h1>" in dom
    assert dom.count('<section class="decision"') == 2
    for text in REASONS:
        assert text in dom
    assert "jane@example.com" not in dom
