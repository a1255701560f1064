"""Shared helpers of the outcome tests: predictions recorded through the public API, and
reviews and reason codes inserted as their writers would (append-only rows)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ml_audit.decision_models import ReasonCodes, Review, ReviewAction
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.services import ActorPayload, record_prediction_event

#: A Monday (ISO week 2026-W10), noon UTC.
MONDAY = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def predict(
    i: int,
    *,
    decision: str = "approve",
    output: Any = None,
    when: dt.datetime = MONDAY,
    model: str = "credit",
    version: str = "1",
    tenant: str = "acme",
) -> PredictionEvent:
    return record_prediction_event(
        model_name=model,
        model_version=version,
        prediction_id=f"{model}-{version}-{tenant}-{i}",
        timestamp=when,
        features={"income": 1000 + i},
        output={"score": 0.5} if output is None else output,
        decision_outcome=decision,
        actor=ActorPayload("service", "scorer", tenant_id=tenant),
    )


def review(
    event: PredictionEvent,
    action: str = ReviewAction.OVERRIDE,
    final: str = "",
    *,
    at: dt.datetime | None = None,
) -> Review:
    row = Review(
        prediction=event,
        tenant_id=event.tenant_id,
        action=action,
        final_outcome=final,
        reviewer_type="user",
        reviewer_id="alice",
        reason="policy",
        comment="checked by hand",
        redaction={},
        created_at=at or event.timestamp + dt.timedelta(hours=1),
    )
    row.save()
    return row


def reason_codes(explanation: Explanation) -> ReasonCodes:
    row = ReasonCodes(
        explanation=explanation,
        prediction_id=explanation.prediction_id,
        codes=[
            {
                "code": "R1",
                "text": "Income too low",
                "feature": "income",
                "direction": "low",
                "contribution": -0.25,
            }
        ],
        created_at=explanation.created_at,
    )
    row.save()
    return row
