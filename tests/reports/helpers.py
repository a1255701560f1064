"""Shared settings and records of the report tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ml_audit.models import PredictionEvent
from ml_audit.outcomes import record_outcome
from ml_audit.oversight import record_review
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event
from ml_audit.subjects import subject_ref

SUBJECT_KEY = "report-tests-subject-key-0123456789abcdef"
T0 = dt.datetime(2026, 3, 3, 10, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)

#: A credit model: a larger output (probability of default) is worse for the applicant.
REASON_CODES: dict[str, Any] = {
    "TOP": 3,
    "FEATURES": {
        "debt_ratio": ("R01", "Debt is high relative to income"),
        "income": {"+": ("R02", "Income is too low for the amount asked"), "-": None},
        "late_payments": {"code": "R03", "text": "Payments were late in the past year"},
        "zip_code": None,
    },
    "MODELS": {
        "credit": {"ADVERSE_OUTCOMES": ["declined", "referred"]},
        "score": {
            "ADVERSE_SIGN": "-",
            "TOP": 2,
            "FEATURES": {"tenure": ("S01", "The account is new")},
        },
    },
}

SHAP = {
    "shap_values": {
        "debt_ratio": 0.31,
        "income": 0.22,
        "age": -0.40,
        "zip_code": 0.05,
        "late_payments": 0.12,
        "tenure": -0.01,
    },
    "base_value": 0.2,
}


def settings_with(**extra: Any) -> dict[str, Any]:
    return {"SUBJECT_KEY": SUBJECT_KEY, "REASON_CODES": REASON_CODES, **extra}


def decide(
    *,
    subject: str | None = "applicant-1",
    tenant: str = "acme",
    decision: str = "declined",
    model_name: str = "credit",
    when: dt.datetime = T0,
    **overrides: Any,
) -> PredictionEvent:
    """A decision of the credit model about ``subject`` in ``tenant``."""
    kwargs: dict[str, Any] = {
        "model_name": model_name,
        "model_version": "3.1",
        "features": {"income": 21000, "debt_ratio": 0.61, "email": "jane@example.com"},
        "output": {"probability_of_default": 0.71},
        "decision_outcome": decision,
        "confidence": 0.71,
        "actor": ActorPayload("user", "officer-9", tenant_id=tenant),
        "timestamp": when,
        "subject": subject,
    }
    kwargs.update(overrides)
    return record_prediction_event(**kwargs)


@dataclass
class History:
    """One applicant's decisions (tenant acme), and decisions about others."""

    ref: str
    declined: PredictionEvent
    approved: PredictionEvent
    someone_else: PredictionEvent
    same_person_elsewhere: PredictionEvent


def build_history() -> History:
    """applicant-1 in acme: declined (explained, contested, overridden to approved, two
    outcomes), then approved by another model; applicant-2's decision, and applicant-1's in
    globex (another reference)."""
    declined = decide(prediction_id="app-1", decision="declined", when=T0)
    attach_explanation(declined, "shap", SHAP, "Debt ratio and income drove the score up.")
    officer = {"actor_type": "user", "actor_id": "officer-9", "tenant_id": "acme"}
    record_review(declined, reviewer=officer, action="contest_received", at=T0 + DAY)
    record_review(
        declined,
        reviewer=officer,
        action="override",
        final_outcome="approved",
        reason="Income proof supplied",
        comment="Payslips checked by phone.",
        at=T0 + 2 * DAY,
    )
    record_outcome(declined, value="repaid", observed_at=T0 + 30 * DAY, source="ledger")
    record_outcome(declined, value="defaulted", observed_at=T0 + 60 * DAY, source="ledger")
    approved = decide(
        prediction_id="app-2",
        decision="approved",
        when=T0 + 90 * DAY,
        model_name="credit-lite",
        confidence=None,
    )
    someone_else = decide(prediction_id="other-1", subject="applicant-2", when=T0 + DAY)
    elsewhere = decide(prediction_id="globex-1", tenant="globex", when=T0 + 3 * DAY)
    ref = subject_ref("applicant-1", tenant="acme")
    assert ref is not None
    assert declined.subject_ref == ref == approved.subject_ref
    assert elsewhere.subject_ref != ref
    return History(ref, declined, approved, someone_else, elsewhere)
