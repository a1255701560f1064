"""Reason codes stored with each explanation revision, never at the explanation's expense."""

from __future__ import annotations

import logging
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ml_audit.exceptions import AppendOnlyError
from ml_audit.models import AppendOnlyQuerySet, Explanation, ReasonCodes
from ml_audit.reasons import backfill
from ml_audit.reasons import writer as reasons_writer
from ml_audit.services import attach_explanation

from .helpers import REASON_CODES, SHAP, decide, settings_with

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _configured(settings: Any) -> None:
    settings.ML_AUDIT = settings_with()


def codes_of(explanation: Explanation) -> list[tuple[str, str, float]]:
    row = ReasonCodes.objects.get(explanation=explanation)
    return [(c["code"], c["feature"], c["contribution"]) for c in row.codes]


def test_a_new_revision_gets_its_reason_codes_in_the_same_write() -> None:
    event = decide(decision="declined")

    explanation = attach_explanation(event, "shap", SHAP, "debt and income")

    row = ReasonCodes.objects.get()
    assert row.explanation_id == explanation.pk
    assert row.prediction_id == event.pk
    assert row.codes == [
        {
            "code": "R01",
            "text": "Debt is high relative to income",
            "feature": "debt_ratio",
            "direction": "+",
            "contribution": 0.31,
        },
        {
            "code": "R02",
            "text": "Income is too low for the amount asked",
            "feature": "income",
            "direction": "+",
            "contribution": 0.22,
        },
        {
            "code": "R03",
            "text": "Payments were late in the past year",
            "feature": "late_payments",
            "direction": "+",
            "contribution": 0.12,
        },
    ]
    assert row.created_at >= explanation.created_at


def test_each_revision_keeps_its_own_codes_and_an_identical_one_adds_nothing() -> None:
    event = decide()
    first = attach_explanation(event, "shap", SHAP)
    same = attach_explanation(event, "shap", SHAP)
    second = attach_explanation(event, "shap", {"shap_values": {"income": 0.5, "debt_ratio": 0.1}})

    assert same.pk == first.pk
    assert ReasonCodes.objects.count() == 2
    assert [c[1] for c in codes_of(first)] == ["debt_ratio", "income", "late_payments"]
    assert [c[1] for c in codes_of(second)] == ["income", "debt_ratio"]


def test_a_favourable_decision_gets_an_empty_list() -> None:
    explanation = attach_explanation(decide(decision="approved"), "shap", SHAP)

    assert ReasonCodes.objects.get(explanation=explanation).codes == []


def test_a_model_no_set_covers_gets_no_row(settings: Any) -> None:
    settings.ML_AUDIT = settings_with(REASON_CODES={"MODELS": REASON_CODES["MODELS"]})

    attach_explanation(decide(model_name="fraud"), "shap", SHAP)

    assert Explanation.objects.count() == 1
    assert ReasonCodes.objects.count() == 0


def test_without_the_setting_nothing_is_stored_and_no_query_is_added(settings: Any) -> None:
    event = decide()
    settings.ML_AUDIT = settings_with(REASON_CODES={})
    with CaptureQueriesContext(connection) as unconfigured:
        attach_explanation(event, "shap", SHAP)
    settings.ML_AUDIT = settings_with()
    with CaptureQueriesContext(connection) as configured:
        attach_explanation(event, "shap", {"shap_values": {"income": 0.4}})

    assert ReasonCodes.objects.count() == 1  # the second revision's only
    assert not any("reasoncodes" in q["sql"] for q in unconfigured.captured_queries)
    # Configured: a savepoint, the prediction's decision and model, the INSERT, the release.
    extra = len(configured.captured_queries) - len(unconfigured.captured_queries)
    assert 2 <= extra <= 4, [q["sql"] for q in configured.captured_queries]


def test_an_unmapped_feature_is_logged_by_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ml_audit.reasons"):
        attach_explanation(decide(), "shap", {"shap_values": {"zip_code": 0.9, "income": 0.1}})

    assert [c[:2] for c in codes_of(Explanation.objects.get())] == [
        ("", "zip_code"),
        ("R02", "income"),
    ]
    [record] = caplog.records
    assert "no code for feature(s) 'zip_code'" in record.getMessage()


def test_a_failure_to_derive_is_logged_and_the_explanation_stored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the policy")

    monkeypatch.setattr(reasons_writer, "derive_for", broken)
    event = decide()

    with caplog.at_level(logging.ERROR, logger="ml_audit.reasons"):
        explanation = attach_explanation(event, "shap", SHAP)

    assert Explanation.objects.get().pk == explanation.pk
    assert ReasonCodes.objects.count() == 0
    [record] = caplog.records
    assert "could not be stored" in record.getMessage()
    assert record.exc_info is not None
    assert "a bug in the policy" in str(record.exc_info[1])


def test_a_database_error_stays_in_its_savepoint(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A real database error while storing the codes (which aborts a PostgreSQL transaction)
    is rolled back to the savepoint: the explanation's transaction commits."""
    real = AppendOnlyQuerySet.bulk_create

    def failing_bulk_create(self: Any, objs: Any, *args: Any, **kwargs: Any) -> Any:
        if self.model is ReasonCodes:
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM ml_audit_no_such_table")
        return real(self, objs, *args, **kwargs)

    monkeypatch.setattr(AppendOnlyQuerySet, "bulk_create", failing_bulk_create)
    event = decide()

    with caplog.at_level(logging.ERROR, logger="ml_audit.reasons"):
        explanation = attach_explanation(event, "shap", SHAP)
        later = attach_explanation(event, "shap", {"shap_values": {"income": 0.4}})

    monkeypatch.undo()
    assert list(Explanation.objects.order_by("revision").values_list("pk", flat=True)) == [
        explanation.pk,
        later.pk,
    ]
    assert ReasonCodes.objects.count() == 0
    assert len(caplog.records) == 2
    # Backfill adds them afterwards.
    assert backfill().written == 2
    assert ReasonCodes.objects.count() == 2


def test_reason_codes_are_append_only() -> None:
    attach_explanation(decide(), "shap", SHAP)
    row = ReasonCodes.objects.get()

    row.codes = []
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        ReasonCodes.objects.update(codes=[])


def test_backfill_adds_what_was_stored_before_the_setting(settings: Any) -> None:
    settings.ML_AUDIT = settings_with(REASON_CODES={})
    declined = attach_explanation(decide(prediction_id="p-1"), "shap", SHAP)
    approved = attach_explanation(decide(prediction_id="p-2", decision="approved"), "shap", SHAP)
    uncovered = attach_explanation(decide(prediction_id="p-3", model_name="fraud"), "shap", SHAP)
    assert ReasonCodes.objects.count() == 0
    credit = {**REASON_CODES["MODELS"]["credit"], "FEATURES": REASON_CODES["FEATURES"]}
    settings.ML_AUDIT = settings_with(REASON_CODES={"TOP": 3, "MODELS": {"credit": credit}})

    dry = backfill(dry_run=True)
    assert (dry.examined, dry.written, dry.not_covered) == (3, 2, 1)
    assert ReasonCodes.objects.count() == 0

    done = backfill(batch_size=1)
    assert (done.examined, done.written, done.not_covered) == (3, 2, 1)
    assert [c[0] for c in codes_of(declined)] == ["R01", "R02", "R03"]
    assert codes_of(approved) == []
    assert not ReasonCodes.objects.filter(explanation=uncovered).exists()

    again = backfill()
    assert (again.examined, again.written, again.not_covered) == (1, 0, 1)


def test_backfill_command(settings: Any) -> None:
    settings.ML_AUDIT = settings_with(REASON_CODES={})
    attach_explanation(decide(), "shap", SHAP)
    settings.ML_AUDIT = settings_with()
    out = StringIO()

    call_command("ml_audit_reason_codes", "--backfill", "--dry-run", stdout=out)
    assert "1 explanation revision(s) without reason codes examined; would store 1" in (
        out.getvalue()
    )
    assert ReasonCodes.objects.count() == 0

    call_command("ml_audit_reason_codes", "--backfill", stdout=out)
    assert "stored 1; 0 of a model" in out.getvalue()
    assert ReasonCodes.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "setting", "message"),
    [
        ([], None, "pass --backfill"),
        (["--backfill", "--batch-size", "0"], None, "--batch-size must be at least 1"),
        (["--backfill"], {}, "is not configured"),
        (["--backfill"], {"TOP": 0, "FEATURES": {}}, "must be an integer from 1"),
    ],
)
def test_backfill_command_refusals(
    settings: Any, args: list[str], setting: Any, message: str
) -> None:
    if setting is not None:
        settings.ML_AUDIT = settings_with(REASON_CODES=setting)
    with pytest.raises(CommandError, match=message):
        call_command("ml_audit_reason_codes", *args)


def test_the_admin_prediction_page_shows_the_subject_and_the_reason_codes(
    admin_client: Any,
) -> None:
    event = decide(decision="declined")
    plain = decide(decision="declined", subject=None, prediction_id="no-subject")
    attach_explanation(event, "shap", SHAP, "debt and income")

    page = admin_client.get(reverse("admin:ml_audit_predictionevent_change", args=[event.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "<code>R01</code> Debt is high relative to income" in html
    assert "<code>R02</code>" in html
    assert len(event.subject_ref) == 64
    assert event.subject_ref in html
    assert "applicant-1" not in html
    unexplained = admin_client.get(
        reverse("admin:ml_audit_predictionevent_change", args=[plain.pk])
    ).content.decode()
    assert "Reason codes of this revision" not in unexplained
    assert plain.subject_ref == ""
