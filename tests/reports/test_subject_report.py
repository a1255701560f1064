"""The subject's report: what it gathers, in which order, in how many queries; the HTML page."""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ml_audit.models import PredictionEvent
from ml_audit.reports import (
    SubjectForgotten,
    SubjectNotFound,
    render_html,
    subject_report,
)
from ml_audit.services import attach_explanation
from ml_audit.subjects import forget_subject, subject_ref

from .conftest import History
from .helpers import SHAP, T0, decide

pytestmark = pytest.mark.django_db


def test_the_report_gathers_each_decision_with_what_followed(history: History) -> None:
    report = subject_report(history.ref)

    assert report["subject_ref"] == history.ref
    assert (report["decision_count"], report["truncated"]) == (2, False)
    first, second = report["decisions"]
    # Oldest first; only this subject, in this tenant.
    assert [first["id"], second["id"]] == [str(history.declined.pk), str(history.approved.pk)]
    assert first["prediction_id"] == "app-1"
    assert first["timestamp"] == "2026-03-03T10:00:00Z"
    assert first["model"] == {"name": "credit", "version": "3.1"}
    assert first["tenant_id"] == "acme"
    # The inputs as stored: redacted.
    assert first["inputs"]["income"] == 21000
    assert first["inputs"]["email"] != "jane@example.com"
    assert "jane@example.com" not in json.dumps(report)
    assert first["output"] == {"probability_of_default": 0.71}
    assert first["confidence"] == 0.71
    # The model said declined; a person overrode it.
    assert (first["model_decision"], first["effective_decision"], first["overridden"]) == (
        "declined",
        "approved",
        True,
    )
    assert [r["action"] for r in first["reviews"]] == ["contest_received", "override"]
    override = first["reviews"][1]
    assert override["final_outcome"] == "approved"
    assert override["reason"] == "Income proof supplied"
    assert override["reviewer_id"] == "officer-9"
    assert override["created_at"] == "2026-03-05T10:00:00Z"
    # The latest observed outcome, and the history before it.
    assert first["observed_outcome"]["value"] == "defaulted"
    assert first["observed_outcome"]["source"] == "ledger"
    assert [o["value"] for o in first["outcomes"]] == ["repaid", "defaulted"]
    # The current explanation with its reasons in words.
    explanation = first["explanation"]
    assert explanation["revision"] == 1
    assert explanation["summary"] == "Debt ratio and income drove the score up."
    assert [(r["code"], r["in_words"]) for r in explanation["reasons"]] == [
        ("R01", "Debt is high relative to income"),
        ("R02", "Income is too low for the amount asked"),
        ("R03", "Payments were late in the past year"),
    ]
    # The second decision: nothing happened after it.
    assert second["model"]["name"] == "credit-lite"
    assert (second["model_decision"], second["effective_decision"]) == ("approved", "approved")
    assert second["overridden"] is False
    assert second["confidence"] is None
    assert (second["reviews"], second["outcomes"], second["observed_outcome"]) == ([], [], None)
    assert second["explanation"] is None
    # Who asked and from where is not about the subject.
    assert not {"actor", "client_ip", "user_agent", "auth_context", "metadata"} & set(first)
    # JSON all the way down.
    assert json.loads(json.dumps(report)) == report


def test_the_current_revision_is_shown_and_reasons_follow_it(history: History) -> None:
    attach_explanation(history.declined, "shap", {"shap_values": {"zip_code": 0.4}}, "Revised.")

    explanation = subject_report(history.ref)["decisions"][0]["explanation"]

    assert (explanation["revision"], explanation["summary"]) == (2, "Revised.")
    [reason] = explanation["reasons"]
    assert (reason["code"], reason["feature"]) == ("", "zip_code")
    assert reason["in_words"] == "A factor without a reason text configured: the input 'zip_code'"


def test_no_stored_reason_codes_is_none_and_none_counted_against_is_empty(
    settings: Any, history: History
) -> None:
    settings.ML_AUDIT = {**settings.ML_AUDIT, "REASON_CODES": {}}
    attach_explanation(history.approved, "shap", SHAP)
    assert subject_report(history.ref)["decisions"][1]["explanation"]["reasons"] is None

    settings.ML_AUDIT = {**settings.ML_AUDIT, "REASON_CODES": {"FEATURES": {}, "TOP": 1}}
    attach_explanation(history.approved, "shap", {"shap_values": {"age": -0.3}})
    assert subject_report(history.ref)["decisions"][1]["explanation"]["reasons"] == []


def test_queries_are_bounded_whatever_the_number_of_decisions(history: History) -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            subject_report(history.ref)
        return len(queries)

    few = count()
    for day in range(12):
        event = decide(prediction_id=f"more-{day}", when=T0 + dt.timedelta(days=100 + day))
        attach_explanation(event, "shap", SHAP)

    assert len(subject_report(history.ref)["decisions"]) == 14
    # The erasure check, the decisions, and their explanations, reviews and outcomes.
    assert count() == few == 5


def test_the_order_is_deterministic_for_equal_timestamps(history: History) -> None:
    same = [decide(prediction_id=f"tie-{i}", when=T0 + dt.timedelta(days=200)) for i in range(3)]

    ids = [d["id"] for d in subject_report(history.ref)["decisions"]][2:]

    assert ids == sorted(str(event.pk) for event in same)


def test_a_limit_truncates_and_says_so(history: History) -> None:
    report = subject_report(history.ref, limit=1)

    assert (report["decision_count"], report["truncated"]) == (1, True)
    assert report["decisions"][0]["prediction_id"] == "app-1"
    assert subject_report(history.ref, limit=2)["truncated"] is False


def test_tenants_narrow_the_report(history: History) -> None:
    assert subject_report(history.ref, tenants=["acme"])["decision_count"] == 2
    with pytest.raises(SubjectNotFound):
        subject_report(history.ref, tenants=["globex"])
    visible = PredictionEvent.objects.filter(prediction_id="app-2")
    assert subject_report(history.ref, predictions=visible)["decision_count"] == 1


def test_unknown_malformed_and_forgotten_subjects(history: History) -> None:
    with pytest.raises(SubjectNotFound):
        subject_report("0" * 64)
    for bad in ("", "0" * 63, "A" * 64, "g" * 64, history.ref + "0"):
        with pytest.raises(ValueError, match="64 lowercase hexadecimal digits"):
            subject_report(bad)

    erasure = forget_subject("applicant-1", tenant="acme", reason="GDPR Art. 17", erased_by="dpo")

    assert erasure.subject_ref == history.ref
    with pytest.raises(SubjectForgotten, match="was forgotten on") as caught:
        subject_report(history.ref)
    assert caught.value.erased_at == erasure.erased_at
    # A reader scoped to another tenant learns nothing of the erasure: only "not found".
    with pytest.raises(SubjectNotFound):
        subject_report(history.ref, tenants=["globex"])
    assert subject_ref("applicant-1", tenant="acme") is None


# --- the printable page -----------------------------------------------------------------------


_BLOCKS = {"p", "li", "tr", "th", "td", "h1", "h2", "h3", "section", "style"}


class _Page(HTMLParser):
    """Tags, attributes and the text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in _BLOCKS:
            self.text.append(" ")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_the_page_reads_as_plain_language_and_prints(history: History) -> None:
    html = render_html(subject_report(history.ref))
    page = parse(html)
    text = re.sub(r"\s+", " ", "".join(page.text))

    assert html.startswith("<!DOCTYPE html>")
    headings = [tag for tag, _ in page.tags if tag in {"h1", "h2", "h3"}]
    assert headings.count("h2") == 2  # one per decision
    for heading in (
        "Automated decisions about one person",
        "Decision 1: approved",
        "Decision 2: approved",
        "What was decided",
        "Main reasons for this decision",
        "How the system explained it",
        "Information the decision was based on",
        "Review by a person",
        "What happened afterwards",
    ):
        assert heading in text, heading
    assert "The model decided declined" in text
    assert "approved (changed by a person)" in text
    assert "Debt is high relative to income (R01)" in text
    assert "Contested, 4 March 2026, 10:00 UTC." in text
    assert "Changed by a person, 5 March 2026, 10:00 UTC: the decision became “approved”." in text
    assert "Reason: Income proof supplied." in text
    assert "Observed outcome: defaulted, 2 May 2026, 10:00 UTC (source: ledger)." in text
    assert "No reasons were recorded for this decision." in text
    assert "No person has reviewed this decision." in text
    assert "No outcome has been recorded." in text
    assert history.ref in text
    assert "@media print" in html
    assert "jane@example.com" not in html


def test_the_page_loads_nothing_from_elsewhere(history: History) -> None:
    page = parse(render_html(subject_report(history.ref)))

    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "base"}
    for _, attributes in page.tags:
        assert not {"src", "href", "srcset", "action"} & set(attributes)
    assert "url(" not in "".join(page.text)
    assert "@import" not in "".join(page.text)


def test_every_value_is_escaped(settings: Any) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    settings.ML_AUDIT = {
        **settings.ML_AUDIT,
        "REASON_CODES": {"FEATURES": {"note": ("R<9>", "Text with <b>markup</b> & more")}},
    }
    event = decide(
        decision=hostile,
        features={"note": hostile, hostile: 1},
        output={"label": hostile},
        model_name="m<odel>",
    )
    attach_explanation(event, "shap", {"shap_values": {"note": 0.5, hostile: 0.4}}, hostile)

    html = render_html(subject_report(event.subject_ref))
    page = parse(html)

    assert "<script>" not in html
    assert "<img" not in html
    assert "<b>" not in html
    assert {tag for tag, _ in page.tags} <= {
        "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p",
        "span", "main", "section", "table", "tbody", "tr", "th", "td", "ol", "li", "ul",
        "strong", "footer",
    }  # fmt: skip
    text = "".join(page.text)
    assert hostile in text  # shown, as text
    assert "Text with <b>markup</b> & more" in text
    assert "A factor without a reason text configured: the input" in text
