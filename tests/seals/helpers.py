"""Shared helpers of the seal tests: keys, rows recorded through the public API, raw tampering
with the append-only triggers out of the way (as the table owner would), and verify runs."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from ml_audit.models import AccessLog, PredictionEvent
from ml_audit.sealing import seal_pending
from ml_audit.sealing.findings import Report
from ml_audit.sealing.verifier import verify
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event

KEY = "k" * 40
SEAL_SETTINGS: dict[str, Any] = {"SEAL_KEY": KEY, "SEAL_KEY_ID": "test-1", "SEAL_LAG_SECONDS": 0}
AUDIT_TABLES = (
    "ml_audit_predictionevent",
    "ml_audit_explanation",
    "ml_audit_accesslog",
    "ml_audit_seal",
    "ml_audit_sealmember",
)


def record(i: int, **extra: Any) -> PredictionEvent:
    """One prediction through the public API, with an actor, request context and a tenant."""
    return record_prediction_event(
        model_name="credit",
        model_version="1.0",
        features={"age": 30 + i, "income": 1000.5 * i, "tiny": 1e-7, "big": 1e17},
        output={"score": 0.25 + i / 1000, "label": "approve"},
        confidence=0.5,
        decision_outcome="approve",
        actor=ActorPayload("user", f"u{i % 3}", tenant_id="acme", ip_address="10.0.0.1"),
        metadata={"é": ["ü", None, True]},
        **extra,
    )


def access_row(i: int = 0) -> AccessLog:
    row = AccessLog(
        accessed_at=timezone.now(),
        user_id=str(i),
        username=f"auditor{i}",
        endpoint="predictions-list",
        method="GET",
        path="/api/ml-audit/predictions/",
        query={"page_size": ["10"]},
        status_code=200,
        returned_ids=[str(uuid.uuid4())],
        result_count=1,
        client_ip="192.0.2.1",
        tenant_scope=["acme"],
    )
    row.save()
    return row


def populate(n: int = 6) -> list[PredictionEvent]:
    """``n`` predictions, explanations of two of them (one with two revisions), two access-log
    rows."""
    events = [record(i) for i in range(n)]
    attach_explanation(events[0], "shap", {"age": 0.4}, "age drove it")
    attach_explanation(events[0], "shap", {"age": 0.5}, "age drove it more")
    attach_explanation(events[1], "lime", {"income": -0.2})
    access_row(0)
    access_row(1)
    return events


def seal_now() -> Any:
    """Seal everything recorded so far (the cut a second ahead: nothing is too young)."""
    return seal_pending(now=timezone.now() + dt.timedelta(seconds=1))


@contextmanager
def triggers_off(*tables: str) -> Iterator[Any]:
    """A cursor with the append-only triggers of ``tables`` out of the way, as a table owner
    can: PostgreSQL ``ALTER TABLE ... DISABLE TRIGGER USER``, SQLite ``DROP TRIGGER``. Both are
    undone by the test's rollback (and re-enabled here on PostgreSQL)."""
    tables = tables or AUDIT_TABLES
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # ALTER TABLE refuses to run while deferred foreign-key checks are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table in tables:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            try:
                yield cursor
            finally:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                for table in tables:
                    cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        else:
            for table in tables:
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            yield cursor


def db_id(value: uuid.UUID | str) -> str:
    """A UUID as the database stores it (SQLite: 32 hex digits)."""
    value = uuid.UUID(str(value))
    return str(value) if connection.vendor == "postgresql" else value.hex


def run_verify(*args: str) -> tuple[int, str]:
    """``manage.py ml_audit_verify *args``: (exit status, stdout)."""
    out = io.StringIO()
    try:
        call_command("ml_audit_verify", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def findings(report: Report | None = None) -> dict[str, dict[str, Any]]:
    """The findings of a verification (run now unless given), by class."""
    report = report if report is not None else verify()
    return {name: finding.as_json() for name, finding in report.findings.items()}


def verify_json(*args: str) -> tuple[int, dict[str, Any]]:
    status, out = run_verify("--json", *args)
    return status, json.loads(out)
