"""Shared helpers of the retention tests: predictions recorded at a given age through the
public API, and purges run as the tests' operator."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.db import connection
from django.utils import timezone

from ml_audit.models import AccessLog, PredictionEvent
from ml_audit.sealing import seal_pending
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event

NOW = timezone.now()


def days_ago(days: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(days=days)


def predict(
    i: int,
    *,
    age_days: float,
    model: str = "credit",
    tenant: str = "acme",
    actor: str = "u1",
    explain: int = 0,
) -> PredictionEvent:
    """One prediction recorded ``age_days`` ago (with ``explain`` explanation revisions)."""
    event = record_prediction_event(
        model_name=model,
        model_version="1.0",
        prediction_id=f"{model}-{tenant}-{i}",
        timestamp=days_ago(age_days),
        features={"age": 30 + i},
        output={"score": 0.5},
        confidence=0.5,
        actor=ActorPayload("user", actor, tenant_id=tenant),
    )
    for revision in range(explain):
        attach_explanation(event, "shap", {"age": 0.1 * (revision + 1)})
    return event


def access_row(age_days: float, i: int = 0) -> AccessLog:
    row = AccessLog(
        accessed_at=days_ago(age_days),
        user_id=str(i),
        username=f"auditor{i}",
        endpoint="predictions-list",
        method="GET",
        path="/api/ml-audit/predictions/",
        query={},
        status_code=200,
        returned_ids=[],
        result_count=0,
        tenant_scope=None,
    )
    row.save()
    return row


def seal_at_now() -> Any:
    """Seal what is recorded, cut at the real time (a later purge seals at the real time too:
    a cut in the future would make its seal look older than this one)."""
    time.sleep(0.002)  # every row's UUIDv7 millisecond is past
    return seal_pending(now=timezone.now())


def execute(sql: str) -> None:
    """One raw statement on the default connection."""
    with connection.cursor() as cursor:
        cursor.execute(sql)


RETENTION: dict[str, Any] = {
    "RETENTION": {"DEFAULT_DAYS": 400, "MODELS": {"fraud": 800}, "ACCESS_LOG_DAYS": 200}
}
