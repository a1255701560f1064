"""Build an audit database with django-ml-audit 0.2.0, the way a 0.2.0 user's database looks.

Run with the interpreter of a virtualenv holding django-ml-audit 0.2.0 (never this project's),
isolated from this source tree::

    <0.2.0 venv>/bin/python -I tests/upgrade/build_old_db.py \
        --database sqlite:////tmp/x/old.sqlite3 --workdir /tmp/x/old --output /tmp/x/old.json

``--database`` is ``sqlite:///<absolute path>`` or ``postgres://user:password@host:port/name``
(the database must exist and be empty). The script writes a tiny settings module into
``--workdir``, runs 0.2.0's ``migrate``, records a variety of rows through 0.2.0's public API
(``record_prediction_event``, ``ActorPayload``, ``attach_explanation``) and inserts a few
awkward-but-possible rows through 0.2.0's ORM, then writes a JSON manifest of every column of
every row of the four ``ml_audit`` tables, read back with 0.2.0's ORM (ids as strings,
datetimes as ISO 8601). On failure the manifest holds ``stage`` and ``error`` and the exit
status is 1.

0.2.0's modules are imported with :func:`importlib.import_module`: its API is not this
project's, and the type checker must not check one against the other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
import sysconfig
import traceback
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

SETTINGS_MODULE = "ml_audit_020_settings"

UTC = dt.UTC


def database_settings(spec: str) -> dict[str, str]:
    """Django ``DATABASES["default"]`` for ``sqlite:///path`` or a PostgreSQL URL."""
    parsed = urlparse(spec)
    if parsed.scheme in {"postgres", "postgresql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
        }
    if parsed.scheme == "sqlite" and parsed.path:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path}
    raise SystemExit(f"unsupported --database {spec!r}: use sqlite:///<path> or postgres://...")


def write_settings(workdir: Path, database: dict[str, str]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{SETTINGS_MODULE}.py").write_text(
        "# Written by tests/upgrade/build_old_db.py: a 0.2.0 user's minimal settings.\n"
        'SECRET_KEY = "ml-audit-0.2.0-upgrade-test"\n'
        "USE_TZ = True\n"
        'TIME_ZONE = "UTC"\n'
        "INSTALLED_APPS = [\n"
        '    "django.contrib.contenttypes",\n'
        '    "django.contrib.auth",\n'
        '    "ml_audit",\n'
        "]\n"
        f"DATABASES = {{'default': {database!r}}}\n"
        'DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"\n',
        encoding="utf-8",
    )


def interpreter_facts() -> dict[str, Any]:
    """Where ml_audit and Django come from: must be this virtualenv's site-packages."""
    from importlib.metadata import version

    import django

    ml_audit = importlib.import_module("ml_audit")
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    ml_audit_file = Path(str(ml_audit.__file__)).resolve()
    return {
        "executable": sys.executable,
        "sys_path": list(sys.path),
        "site_packages": str(site_packages),
        "ml_audit_file": str(ml_audit_file),
        "ml_audit_in_site_packages": ml_audit_file.is_relative_to(site_packages),
        "ml_audit_version": version("django-ml-audit"),
        "django_version": django.get_version(),
    }


def at(text: str) -> dt.datetime:
    """An aware UTC datetime from ``YYYY-MM-DDTHH:MM:SS.ffffff``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def record_rows() -> dict[str, Any]:
    """Record the rows through 0.2.0's API and ORM; returns named references for the test."""
    services: Any = importlib.import_module("ml_audit.services")
    models: Any = importlib.import_module("ml_audit.models")
    record = services.record_prediction_event
    attach = services.attach_explanation
    Actor = services.ActorPayload

    alice_acme = Actor(
        actor_type="user",
        actor_id="u-1042",
        tenant_id="acme",
        ip_address="203.0.113.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        auth_token={"sub": "u-1042", "scopes": ["predict", "read"], "iss": "https://idp.acme"},
    )
    # Same identity, other request context: 0.2.0 keeps the first one (get_or_create).
    alice_acme_again = Actor(
        actor_type="user",
        actor_id="u-1042",
        tenant_id="acme",
        ip_address="198.51.100.99",
        user_agent="okhttp/4.12.0",
        auth_token={"sub": "u-1042", "scopes": ["predict"]},
    )
    alice_globex = Actor(
        actor_type="user",
        actor_id="u-1042",
        tenant_id="globex",
        ip_address="192.0.2.44",
        user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
        auth_token={"sub": "u-1042", "tenant": "globex"},
    )
    billing = Actor(
        actor_type="service",
        actor_id="billing-svc",
        tenant_id="acme",
        ip_address="10.0.4.21",
        user_agent="python-requests/2.32.3",
        auth_token={"mtls": True, "cn": "billing-svc.internal"},
    )
    api_key = Actor(
        actor_type="api_key",
        actor_id="key_7f3a9c",
        tenant_id="globex",
        ip_address="2001:db8::1",
        user_agent="curl/8.5.0",
        auth_token=None,
    )
    nightly = Actor(actor_type="job", actor_id="nightly-rescore", auth_token={"via": "celery"})
    partner = Actor(
        actor_type="other",
        actor_id="partner-x",
        tenant_id="initech",
        ip_address="198.51.100.23",
        user_agent="",
        auth_token={},
    )
    credit_v14 = {
        "model_name": "credit-risk",
        "model_version": "1.4.0",
        "framework": "sklearn",
        "build_id": "train-2024-11-03#17",
        "commit_hash": "9f1c2e7d4b",
        "config_snapshot": {"max_depth": 6, "n_estimators": 300, "inputs": ["income", "age"]},
    }
    credit_v15 = {
        "model_name": "credit-risk",
        "model_version": "1.5.0",
        "framework": "xgboost",
        "build_id": "mlflow:run/4c1d",
        "commit_hash": "0b5e6a1c2d3e4f5061728394a5b6c7d8e9f00112",
        "config_snapshot": {"eta": 0.1, "objective": "binary:logistic", "nested": {"k": [1, 2]}},
    }
    fraud = {
        "model_name": "fraud-detector",
        "model_version": "2025.01",
        "framework": "lightgbm",
        "build_id": "",
        "commit_hash": "a3f9",
        "config_snapshot": {"threshold": 0.9},
    }
    churn = {"model_name": "churn", "model_version": "v3", "framework": "other"}  # no config

    named: dict[str, Any] = {}

    p = record(
        **credit_v14,
        features={"income": 52000, "age": 41, "email": "jane@example.com", "tier": "gold"},
        output={"score": 0.82, "label": "approve"},
        confidence=0.82,
        decision_outcome="approved",
        actor=alice_acme,
        environment="production",
        trace_id="7b1c0d9e-2f4a-4c1e-9d3b-5a6f7e8d9c0b",  # an X-Request-ID, not a W3C trace id
        latency_ms=12.5,
        metadata={"request_path": "/api/score", "ab_bucket": "B"},
        prediction_id="loan-2025-000123",
        timestamp=at("2025-01-15T09:30:12.123456"),
    )
    named["x_request_id"] = str(p.id)
    attach(
        prediction=p,
        method="shap",
        method_version="0.45.1",
        payload={"income": 0.31, "age": -0.05, "tier": 0.12},
        summary_text="Income contributed most to approval.",
    )
    named["explained_once"] = str(p.id)

    p = record(
        **credit_v14,
        features={"income": 18000, "age": 23, "phone_number": "+1 555 0100", "tier": "basic"},
        output=[0.4, 0.6],
        confidence=0.6,
        decision_outcome="review",
        actor=alice_acme_again,
        environment="production",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",  # W3C trace id
        latency_ms=8.0,
        status="partial",
        metadata={"fallback": "rules"},
    )
    named["w3c_trace"] = str(p.id)
    named["second_request_same_actor"] = str(p.id)

    p = record(
        **credit_v15,
        features={"income": 99000, "age": 57, "customer_email": "bob@example.org"},
        output=None,
        decision_outcome="",
        actor=billing,
        environment="production",
        latency_ms=250.0,
        status="failed",
        metadata={"error": "timeout talking to the feature store"},
        timestamp=at("2025-02-01T00:00:00.000001"),
    )
    named["failed"] = str(p.id)

    p = record(
        **fraud,
        features={"amount": 120.5, "currency": "EUR", "country": "DE"},
        output={"fraud": True, "score": 0.97},
        confidence=0.97,
        decision_outcome="fraud",
        actor=api_key,
        environment="staging",
        trace_id="abc123",  # a short caller correlation id
        latency_ms=3.25,
        metadata=None,  # 0.2.0 stores {} for it
        prediction_id="fraud-2025-0007",
        timestamp=at("2025-02-03T17:45:00.500000"),
    )
    first = {
        "method": "lime",
        "method_version": "0.2.0.1",
        "payload": {"amount": 0.7},
        "summary_text": "Amount is unusual.",
        "status": "success",
    }
    attach(prediction=str(p.id), **first)
    last = {
        "method": "shap",
        "method_version": "0.46.0",
        "payload": {"amount": 0.61, "country": 0.22, "currency": 0.01},
        "summary_text": "Amount and country drove the fraud score.",
        "status": "partial",
    }
    # 0.2.0 updates the explanation in place (update_or_create): only the last content remains.
    # (Looked up by prediction_id this time.)
    attach(prediction="fraud-2025-0007", generated_at=at("2025-02-03T18:00:00.000000"), **last)
    named["explained_twice"] = {"prediction": str(p.id), "first": first, "last": last}

    p = record(
        **churn,
        features={"tenure_months": 18, "plan": "pro", "monthly_spend": 79.9},
        output=0.31,
        confidence=0.31,
        decision_outcome="retain",
        environment="production",
        input_fingerprint="2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",  # the caller's own hash
        timestamp=at("2025-03-10T12:00:00.000000"),
    )
    named["caller_fingerprint"] = str(p.id)
    named["no_actor"] = str(p.id)

    p = record(
        **fraud,
        features={
            "txn": {"amount": 980.0, "currency": "USD", "tags": ["online", "first-time"]},
            "card_number": "4111111111111111",
        },
        output={"fraud": False, "score": 0.12},
        confidence=0.12,
        decision_outcome="clear",
        actor=nightly,
        environment="batch",
        latency_ms=0.0,
        prediction_id="txn-88812",
        timestamp=at("2025-03-11T02:15:30.250000"),
    )
    named["no_tenant_actor"] = str(p.id)

    p = record(
        **credit_v15,
        features={"password": "hunter2", "note": "ünïcødé ✓", "score_inputs": [1, 2.5, None]},
        output={"error": "bad input"},
        actor=partner,
        environment="production",
        status="failed",
        timestamp=at("2025-03-12T08:00:00.000000"),
    )
    attach(
        prediction=p.id,
        method="custom_reason_codes",
        payload={"error": "explainer crashed"},
        status="failed",
    )
    named["failed_explanation"] = str(p.id)

    p = record(
        **fraud,
        features={"amount": 15.0, "currency": "GBP"},
        output={"fraud": False, "score": 0.02},
        confidence=0.02,
        decision_outcome="clear",
        actor=alice_globex,
        environment="production",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        latency_ms=1.75,
        timestamp=at("2025-03-12T08:00:00.000000"),  # same instant as the previous one
    )
    attach(
        prediction=p,
        method="custom_reason_codes",
        method_version="2",
        payload={"codes": ["R01", "R17"]},
        summary_text="Low amount, known device.",
        generated_at=at("2025-03-12T08:00:01.000000"),
    )
    named["other_tenant_same_actor_id"] = str(p.id)

    # Awkward but possible through 0.2.0's ORM.
    legacy = models.ModelVersion.objects.create(
        model_name="legacy-scorer", version="0.9", framework="other", config_snapshot=None
    )
    legacy_off = models.ModelVersion.objects.create(
        model_name="legacy-scorer", version="0.8", is_active=False, config_snapshot=None
    )
    named["orm_models"] = [str(legacy.id), str(legacy_off.id)]
    p = models.PredictionEvent.objects.create(
        prediction_id="orm-null-metadata",
        model=legacy,
        features={"x": 1, "y": [1, 2, 3]},
        output={"y": 2},
        metadata=None,
        timestamp=at("2025-04-01T10:00:00.000000"),
    )
    named["null_metadata"] = str(p.id)
    named["empty_fingerprint"] = str(p.id)
    models.Explanation.objects.create(
        prediction=p, method="", payload={"note": "hand-written, no method"}
    )
    named["empty_method_explanation"] = str(p.id)
    billing_row = models.RequestingActor.objects.get(actor_type="service", actor_id="billing-svc")
    p = models.PredictionEvent.objects.create(
        prediction_id="orm-with-actor",
        model=legacy_off,
        actor=billing_row,
        features={},
        output=None,
        metadata=None,
        confidence=None,
        decision_outcome="",
        status="partial",
        latency_ms=None,
        environment="",
        trace_id="",
        timestamp=at("2025-04-01T10:00:00.000001"),
    )
    named["orm_with_actor"] = str(p.id)
    # Values 0.2.0 never validated: a confidence outside [0, 1], a negative latency, a status
    # outside its choices, metadata that is not an object.
    p = models.PredictionEvent.objects.create(
        prediction_id="orm-out-of-range",
        model=legacy,
        features={"x": 2},
        output={"y": 3},
        confidence=1.5,
        latency_ms=-3.0,
        status="timeout",
        metadata=["legacy", "list"],
        timestamp=at("2025-04-02T00:00:00.000000"),
    )
    named["out_of_range"] = str(p.id)
    # One identity stored twice (0.2.0 had no unique constraint on actors), each row with its
    # own request context and prediction.
    duplicates = []
    for number, address in ((1, "203.0.113.50"), (2, "203.0.113.51")):
        actor = models.RequestingActor.objects.create(
            actor_type="user",
            actor_id="u-dup",
            tenant_id="acme",
            ip_address=address,
            user_agent=f"client/{number}",
            auth_context={"session": number},
        )
        models.PredictionEvent.objects.create(
            prediction_id=f"orm-duplicate-actor-{number}",
            model=legacy,
            actor=actor,
            features={"n": number},
            output=None,
            timestamp=at(f"2025-04-03T00:00:0{number}.000000"),
        )
        duplicates.append(str(actor.id))
    named["duplicate_actors"] = duplicates
    return named


def jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def dump_tables() -> dict[str, list[dict[str, Any]]]:
    """Every column (attname) of every row of the four tables, by table name, ordered by id."""
    models: Any = importlib.import_module("ml_audit.models")
    tables: dict[str, list[dict[str, Any]]] = {}
    for model in (
        models.ModelVersion,
        models.RequestingActor,
        models.PredictionEvent,
        models.Explanation,
    ):
        fields = model._meta.concrete_fields
        tables[model._meta.db_table] = [
            {field.attname: jsonable(getattr(row, field.attname)) for field in fields}
            for row in model.objects.order_by("pk")
        ]
    return tables


def applied_migrations() -> list[str]:
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connection)
    return sorted(name for app, name in recorder.applied_migrations() if app == "ml_audit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args(argv)

    manifest: dict[str, Any] = {"stage": "setup", "error": None}
    try:
        database = database_settings(args.database)
        write_settings(args.workdir, database)
        sys.path.insert(0, str(args.workdir))
        os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
        import django

        django.setup()
        manifest["interpreter"] = facts = interpreter_facts()
        manifest["vendor"] = database["ENGINE"].rsplit(".", 1)[-1]
        if not facts["ml_audit_in_site_packages"] or facts["ml_audit_version"] != "0.2.0":
            raise RuntimeError(
                f"ml_audit is not 0.2.0 from this virtualenv's site-packages: {facts}"
            )

        manifest["stage"] = "migrate"
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        manifest["applied_migrations"] = applied_migrations()

        manifest["stage"] = "record"
        manifest["named"] = record_rows()

        manifest["stage"] = "dump"
        manifest["tables"] = dump_tables()
        manifest["stage"] = "done"
    except BaseException:  # reported in the manifest, whatever it is
        manifest["error"] = traceback.format_exc()
    args.output.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    counts = {name: len(rows) for name, rows in manifest.get("tables", {}).items()}
    print(f"stage={manifest['stage']} rows={counts}")
    if manifest["error"]:
        print(manifest["error"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
