"""Shared helpers of the subject tests: keys, and predictions naming a subject through the
public API."""

from __future__ import annotations

from typing import Any

from ml_audit.models import PredictionEvent
from ml_audit.services import ActorPayload, record_prediction_event

SUBJECT_KEY = "s" * 40
SUBJECT_SETTINGS: dict[str, Any] = {
    "SUBJECT_KEY": SUBJECT_KEY,
    "SEAL_KEY": "k" * 40,
    "SEAL_KEY_ID": "subjects-test",
    "SEAL_LAG_SECONDS": 0,
}
#: An identifier that must never show up anywhere: rows, spans, journal lines.
ALICE = "alice.identifier-7731@example.org"
BOB = "bob-customer-0042"


def predict(i: int, subject: Any = ALICE, *, tenant: str = "acme", **extra: Any) -> PredictionEvent:
    """One prediction of model "credit" about ``subject`` (None: no subject) in ``tenant``."""
    return record_prediction_event(
        model_name="credit",
        model_version="1.0",
        prediction_id=f"p-{tenant}-{i}",
        features={"age": 30 + i, "income": 1000.5 * i},
        output={"score": 0.25 + i / 1000},
        confidence=0.5,
        decision_outcome="approve",
        actor=ActorPayload("user", f"officer{i % 2}", tenant_id=tenant or None),
        subject=subject,
        **extra,
    )
