"""A runnable tour of ml_audit on an embedded SQLite database.

    python examples/quickstart.py [--db PATH]

Records a few predictions (one carrying PII that gets redacted, one failure), attaches an
explanation and a revised one, shows idempotent retries and conflicts, proves the rows are
append-only at the database level and that their content hashes verify, and prints the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import django
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def configure(db_path: Path) -> None:
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="quickstart-only",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db_path)}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "ml_audit"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ML_AUDIT={"ENVIRONMENT": "quickstart"},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> int:
    parser = argparse.ArgumentParser(description="ml_audit quickstart")
    parser.add_argument("--db", type=Path, help="SQLite file (default: a new temporary one)")
    args = parser.parse_args()
    db_path = args.db or Path(tempfile.mkdtemp(prefix="ml-audit-quickstart-")) / "audit.sqlite3"
    configure(db_path)

    from django.db import DatabaseError, connection, transaction

    from ml_audit import store
    from ml_audit.exceptions import PredictionConflict
    from ml_audit.models import PredictionEvent
    from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event

    analyst = ActorPayload(
        actor_type="user",
        actor_id="42",
        tenant_id="acme-bank",
        ip_address="203.0.113.7",
        user_agent="quickstart/1.0",
    )
    features = {
        "age": 42,
        "income": 100_000,
        "email": "jane.doe@example.com",  # masked by key
        "notes": "call +44 20 7946 0958 after 5pm",  # phone number masked by value detector
        "card": {"number": "4111 1111 1111 1111", "country": "GB"},
    }
    score = 0.87
    event = record_prediction_event(
        model_name="fraud_detector",
        model_version="1.0.0",
        features=features,
        output={"score": score, "is_fraud": score > 0.8},
        decision_outcome="flagged",
        confidence=score,
        actor=analyst,
        trace_id="req-7f3a",  # not a W3C trace id: stored as the correlation id
        latency_ms=12.3,
        prediction_id="txn-0001",
    )
    print(f"recorded {event.prediction_id} (row id {event.pk}, UUIDv7)")

    retry = record_prediction_event(
        model_name="fraud_detector",
        model_version="1.0.0",
        features=features,
        output={"score": score, "is_fraud": True},
        decision_outcome="flagged",
        confidence=score,
        actor=analyst,
        latency_ms=15.0,
        prediction_id="txn-0001",
    )
    print(f"retry with the same content returned the same row: {retry.pk == event.pk}")
    try:
        record_prediction_event(
            "fraud_detector", "1.0.0", features, {"score": 0.1}, prediction_id="txn-0001"
        )
    except PredictionConflict as exc:
        print(f"different content under the same id is refused: {exc}")

    record_prediction_event(
        "fraud_detector",
        "1.0.0",
        {"age": 19, "income": 0},
        status="failed",
        error_type="ValueError",
        error_message="income must be positive",
        actor=ActorPayload("service", "scoring-batch"),
        prediction_id="txn-0002",
    )

    attach_explanation(
        "txn-0001",
        method="shap",
        payload={"feature_importances": {"income": -0.21, "age": 0.05}},
        summary_text="Low income relative to the transaction contributed most.",
    )
    current = attach_explanation(
        event.pk,
        method="shap",
        method_version="0.46",
        payload={"feature_importances": {"income": -0.19, "age": 0.04}},
        summary_text="Recomputed with the new background set.",
    )
    print(f"explanation revision {current.revision} is current; earlier ones are kept")

    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE ml_audit_predictionevent SET decision_outcome = 'clean'")
    except DatabaseError as exc:
        print(f"raw SQL UPDATE refused by the database: {exc}")

    rows = PredictionEvent.objects.select_related("model", "actor").order_by("timestamp")
    print(f"\n{rows.count()} rows in {db_path}:")
    for row in rows:
        print(
            json.dumps(
                {
                    "prediction_id": row.prediction_id,
                    "model": str(row.model),
                    "actor": str(row.actor) if row.actor else None,
                    "client_ip": row.client_ip,
                    "features": row.features,
                    "redacted": row.redaction["paths"],
                    "output": row.output,
                    "decision": row.decision_outcome,
                    "status": row.status,
                    "correlation_id": row.correlation_id,
                    "explanation": row.explanation.summary_text if row.explanation else None,
                    "content_hash_ok": store.verify_event(row),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
