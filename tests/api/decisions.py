"""Rows of the human side of a decision, for the API's tests: predictions about a subject,
reviews, outcomes and reason codes.

The API only reads these tables, so the rows are inserted as they are stored (the writers,
``record_review`` and ``record_outcome``, are tested with their own modules); a prediction
about a subject goes through the one writer, ``store.write``, with its reference already made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from typing import Any

from ml_audit import store
from ml_audit.decision_models import Outcome, ReasonCodes, Review
from ml_audit.models import Explanation, PredictionEvent

from ..factories import redacted

T0 = dt.datetime(2026, 3, 3, 10, 0, tzinfo=dt.UTC)
_numbers = itertools.count()


def subject_ref(name: str) -> str:
    """A well-formed subject reference (64 lower-case hex digits) standing for ``name``."""
    return hashlib.sha256(name.encode()).hexdigest()


def about(subject: str, **overrides: Any) -> PredictionEvent:
    """A prediction whose subject is ``subject`` (a name, made a reference here)."""
    return store.write(redacted(subject_ref=subject_ref(subject), **overrides))


def review(
    event: PredictionEvent,
    action: str,
    *,
    final_outcome: str = "",
    at: dt.datetime = T0,
    reviewer: tuple[str, str] = ("user", "alice"),
    reason: str = "",
    comment: str = "",
) -> Review:
    return Review.objects.create(
        prediction=event,
        tenant_id=event.tenant_id,
        action=action,
        final_outcome=final_outcome,
        reviewer_type=reviewer[0],
        reviewer_id=reviewer[1],
        reason=reason,
        comment=comment,
        created_at=at,
    )


def outcome(
    event: PredictionEvent,
    value: Any,
    *,
    observed_at: dt.datetime = T0,
    recorded_at: dt.datetime | None = None,
    source: str = "",
) -> Outcome:
    return Outcome.objects.create(
        prediction=event,
        tenant_id=event.tenant_id,
        value=value,
        observed_at=observed_at,
        recorded_at=observed_at if recorded_at is None else recorded_at,
        source=source,
        idempotency_key=f"{next(_numbers):064d}",
    )


def reason_codes(explanation: Explanation, *codes: str) -> ReasonCodes:
    """Reason codes of ``explanation``: one entry per code, in the stored shape."""
    return ReasonCodes.objects.create(
        explanation=explanation,
        prediction_id=explanation.prediction_id,
        codes=[
            {
                "code": code,
                "text": f"text of {code}",
                "feature": f"feature_{code.lower()}",
                "direction": "+",
                "contribution": 0.5 / (n + 1),
            }
            for n, code in enumerate(codes)
        ],
        created_at=explanation.created_at,
    )
