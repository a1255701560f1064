"""Migrate a database with this project's migrations, then dump its schema and read it back.

Run with this project's interpreter::

    .venv/bin/python tests/upgrade/inspect_new_db.py \
        --database sqlite:////tmp/x/old.sqlite3 --workdir /tmp/x/new --output /tmp/x/new.json

``--database`` is ``sqlite:///<absolute path>`` or a PostgreSQL URL (the database must exist).
``--source-root`` (default: this checkout) is put first on ``sys.path``, so ``ml_audit`` is the
one of that tree. The script writes a settings module and a URLconf (the API at
``api/ml-audit/``) into ``--workdir`` and then, stage by stage:

``migrate``
    our ``migrate`` (every app: auth, admin, sessions... and ``ml_audit``).
``makemigrations``
    ``makemigrations ml_audit --check --dry-run``: whether the models have changes the
    migrations lack (reported, not fatal).
``seed`` (only with ``--seed``, a debug mode)
    records a few rows through ``ml_audit.services.record_prediction_event`` and
    ``attach_explanation``, so that the read-back can be tried on a fresh database.
``schema``
    the normalised schema of the ``ml_audit_*`` tables (see :func:`schema`).
``orm``
    through our ORM: every row of the model-version, actor and explanation tables; for each
    prediction its model and actor ids, ``ml_audit.store.verify_event`` and the fingerprint our
    code computes from its features; ``verify_explanation`` of every explanation (failures of
    either are listed in ``verify_failures``).
``api``
    every prediction read through our read-only REST API by a superuser
    (``rest_framework.test.APIClient``): ``predictions/`` paged through with a small page
    size, ``predictions/<id>/`` for each, ``models/`` paged through, ``traces/<trace_id>/``
    for each W3C trace id seen.
``append_only``
    an ``UPDATE`` and a ``DELETE`` of a stored prediction and an ``UPDATE`` of a stored
    explanation through a raw cursor (each in a transaction rolled back whatever happens):
    the append-only triggers must refuse them.

Everything goes to the JSON ``--output``; a stage that raises stops the script with ``stage``
and ``error`` (the traceback) in the output and exit status 1.

Schema normalisation (what two databases must agree on to compare equal):

* tables: every table whose name starts with ``ml_audit_``, and the applied ``ml_audit``
  migrations (``django_migrations``);
* columns, by name (column order is ignored: a column added later is last on one database and
  may not be on another): on SQLite the column's definition as written in ``sqlite_master``
  (type, NULL/NOT NULL, PRIMARY KEY, UNIQUE, CHECK, REFERENCES ... DEFERRABLE), whitespace
  collapsed; on PostgreSQL the type (``udt_name`` and length), nullability and default;
* table constraints (SQLite: the ``CONSTRAINT``/``CHECK``/``UNIQUE`` items of the CREATE TABLE
  statement; PostgreSQL: ``pg_constraint`` with ``pg_get_constraintdef``: primary key, unique,
  check, foreign key with its actions and deferrability);
* indexes (SQLite: ``PRAGMA index_list``/``index_info``: kind, uniqueness, columns in order,
  partial ``WHERE``; PostgreSQL: ``pg_get_indexdef``: method, columns, operator classes,
  ``WHERE``);
* triggers by name with their full definition (SQLite: ``sqlite_master``; PostgreSQL:
  ``pg_get_triggerdef``), and on PostgreSQL the definition (``pg_get_functiondef``) of every
  function a trigger calls.

Names are compared where a human chose them (``Meta.indexes``/``constraints`` names,
triggers). Names Django or the database derive from a hash or from the table and column names
(:data:`GENERATED_NAME`: ``sqlite_autoindex_*``, ``*_pkey``, ``*_key``, ``*_check``,
``<table>_<column>_<8 hex>[_suffix]`` from ``schema_editor._create_index_name`` and
``<t>_<c>_<6 hex>_idx`` from ``Index.set_name_with_model``) are shown as ``<generated>``: the same
index reached by two histories may carry two such names. Lists are compared as sorted
multisets, so two generated indexes on the same columns still count twice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import re
import sys
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

SETTINGS_MODULE = "ml_audit_upgrade_settings"
URLCONF_MODULE = "ml_audit_upgrade_urls"
API = "/api/ml-audit/"
PAGE_SIZE = 4  # small, so that the few rows span several pages
MAX_PAGES = 1000
#: LIKE pattern (backslash escapes) of the tables compared: ml_audit_*.
TABLE_PATTERN = "ml\\_audit\\_%"

#: Index and constraint names derived by Django or the database rather than chosen by a human.
GENERATED_NAME = re.compile(
    r"^sqlite_autoindex_"  # SQLite: UNIQUE / PRIMARY KEY written in CREATE TABLE
    r"|_pkey$|_key$|_check$"  # PostgreSQL: inline PRIMARY KEY / UNIQUE / CHECK
    r"|_[0-9a-f]{8}(_[a-z0-9_]*)?$"  # Django's _create_index_name(): ..._<hash8>[_like|_uniq|_fk..]
    r"|_[0-9a-f]{6}_idx$"  # Django's Index.set_name_with_model(): <t11>_<c7>_<hash6>_idx
)


def display_name(name: str) -> str:
    return "<generated>" if GENERATED_NAME.search(name) else name


def collapse(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------ set-up


def write_project(workdir: Path, database: dict[str, Any]) -> None:
    """The settings module and URLconf of a project using our app (as tests/settings.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = f"""# Written by tests/upgrade/inspect_new_db.py.
SECRET_KEY = "ml-audit-upgrade-test"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
DATABASES = {{"default": {database!r}}}
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "django_filters",
    "ml_audit",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = {URLCONF_MODULE!r}
TEMPLATES = [
    {{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {{
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        }},
    }}
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
BASE_DIR = {str(workdir)!r}
ML_AUDIT = {{"SPOOL_DIR": {str(workdir / "spool")!r}}}
"""
    urls = """# Written by tests/upgrade/inspect_new_db.py.
from django.urls import include, path

urlpatterns = [path("api/ml-audit/", include("ml_audit.api.urls"))]
"""
    (workdir / f"{SETTINGS_MODULE}.py").write_text(settings, encoding="utf-8")
    (workdir / f"{URLCONF_MODULE}.py").write_text(urls, encoding="utf-8")


def database_settings(spec: str) -> dict[str, Any]:
    from tests.settings import database_from_url

    settings = database_from_url(spec)
    if settings["ENGINE"].endswith("sqlite3") and settings["NAME"] in {"", ":memory:"}:
        raise SystemExit(f"--database {spec!r}: give sqlite:///<absolute path of a file>")
    return settings


def jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


# ------------------------------------------------------------------------------ schema


def split_top_level(body: str) -> list[str]:
    """The comma-separated items of a CREATE TABLE body (commas inside parentheses or quotes
    do not split)."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    quote = ""
    for char in body:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""  # a doubled quote closes and reopens: same result
            continue
        if char in "'\"`":
            quote = char
        elif char == "[":
            quote = "]"
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        items.append("".join(current).strip())
    return items


_TABLE_CONSTRAINT = re.compile(r"^(CONSTRAINT|CHECK|UNIQUE|PRIMARY|FOREIGN)\b", re.IGNORECASE)
_CONSTRAINT_NAME = re.compile(r'^CONSTRAINT\s+("[^"]+"|\S+)', re.IGNORECASE)
_INDEX_NAME = re.compile(r"\bINDEX\s+(\S+)\s+ON\b")


def _sqlite_table(cursor: Any, table: str, create_sql: str) -> dict[str, Any]:
    body = create_sql[create_sql.index("(") + 1 : create_sql.rindex(")")]
    columns: dict[str, str] = {}
    constraints: list[str] = []
    for item in split_top_level(body):
        if _TABLE_CONSTRAINT.match(item):
            found = _CONSTRAINT_NAME.match(item)
            if found:
                name = found.group(1).strip('"')
                item = item.replace(found.group(1), f'"{display_name(name)}"', 1)
            constraints.append(collapse(item))
            continue
        name, _, definition = item.partition(" ")
        columns[name.strip('"`[]')] = collapse(definition)
    indexes: list[str] = []
    cursor.execute(f'PRAGMA index_list("{table}")')
    for _seq, name, unique, origin, partial in cursor.fetchall():
        cursor.execute(f'PRAGMA index_info("{name}")')
        index_columns = [str(column) for _n, _cid, column in cursor.fetchall()]
        where = ""
        if partial:
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = %s", [name]
            )
            (index_sql,) = cursor.fetchone()
            where = " WHERE " + collapse(re.split(r"\bWHERE\b", index_sql, flags=re.I)[-1])
        kind = {"c": "INDEX", "u": "UNIQUE constraint", "pk": "PRIMARY KEY"}.get(origin, origin)
        indexes.append(
            f"{'UNIQUE ' if unique and origin == 'c' else ''}{kind} "
            f"({', '.join(index_columns)}){where} name={display_name(name)}"
        )
    cursor.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [table]
    )
    triggers = {name: collapse(sql) for name, sql in cursor.fetchall()}
    return {
        "columns": columns,
        "constraints": sorted(constraints),
        "indexes": sorted(indexes),
        "triggers": triggers,
    }


def _sqlite_schema(cursor: Any) -> dict[str, Any]:
    cursor.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name LIKE %s ESCAPE '\\' "
        "ORDER BY name",
        [TABLE_PATTERN],
    )
    return {name: _sqlite_table(cursor, name, sql) for name, sql in cursor.fetchall()}


_PG_CONSTRAINT_KINDS = {
    "p": "PRIMARY KEY",
    "u": "UNIQUE",
    "c": "CHECK",
    "f": "FOREIGN KEY",
    "x": "EXCLUDE",
    "t": "TRIGGER",
}


def _postgres_table(cursor: Any, table: str, functions: dict[str, str]) -> dict[str, Any]:
    cursor.execute(
        "SELECT column_name, udt_name, character_maximum_length, is_nullable, column_default "
        "FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s",
        [table],
    )
    columns: dict[str, Any] = {}
    for name, udt, length, nullable, default in cursor.fetchall():
        columns[name] = {
            "type": f"{udt}({length})" if length else udt,
            "nullable": nullable == "YES",
            "default": default,
        }
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass",
        [table],
    )
    constraints = sorted(
        f"{_PG_CONSTRAINT_KINDS.get(kind, kind)} {display_name(name)}: {collapse(definition)}"
        for name, kind, definition in cursor.fetchall()
    )
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
        [table],
    )
    indexes = sorted(
        _INDEX_NAME.sub(f"INDEX {display_name(name)} ON", collapse(definition), count=1)
        for name, definition in cursor.fetchall()
    )
    cursor.execute(
        "SELECT t.tgname, pg_get_triggerdef(t.oid), p.proname, pg_get_functiondef(p.oid) "
        "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgrelid = %s::regclass AND NOT t.tgisinternal",
        [table],
    )
    triggers: dict[str, str] = {}
    for name, definition, function, function_definition in cursor.fetchall():
        triggers[name] = collapse(definition)
        functions[function] = collapse(function_definition)
    return {
        "columns": columns,
        "constraints": constraints,
        "indexes": indexes,
        "triggers": triggers,
    }


def _postgres_schema(cursor: Any, functions: dict[str, str]) -> dict[str, Any]:
    cursor.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename LIKE %s ORDER BY tablename",
        [TABLE_PATTERN],
    )
    tables = [name for (name,) in cursor.fetchall()]
    return {name: _postgres_table(cursor, name, functions) for name in tables}


def schema() -> dict[str, Any]:
    """The normalised schema of the ``ml_audit_*`` tables (see the module docstring)."""
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    applied = sorted(
        name
        for app, name in MigrationRecorder(connection).applied_migrations()
        if app == "ml_audit"
    )
    functions: dict[str, str] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            tables = _sqlite_schema(cursor)
        elif connection.vendor == "postgresql":
            tables = _postgres_schema(cursor, functions)
        else:
            raise RuntimeError(f"no schema dump for {connection.vendor}")
    return {
        "vendor": connection.vendor,
        "applied_migrations": applied,
        "tables": tables,
        "functions": functions,
    }


# ------------------------------------------------------------------------------ stages


def run_migrate() -> dict[str, Any]:
    from django.core.management import call_command

    out = io.StringIO()
    call_command("migrate", interactive=False, verbosity=1, stdout=out, stderr=out)
    return {"output": out.getvalue()}


def check_makemigrations() -> dict[str, Any]:
    from django.core.management import call_command

    out = io.StringIO()
    try:
        call_command("makemigrations", "ml_audit", check=True, dry_run=True, stdout=out, stderr=out)
    except SystemExit as exc:
        return {"changes": bool(exc.code), "output": out.getvalue()}
    return {"changes": False, "output": out.getvalue()}


def seed() -> dict[str, Any]:
    """Debug mode: a few rows recorded through our public API on a fresh database."""
    from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event

    actor = ActorPayload(
        actor_type="user",
        actor_id="u-1",
        tenant_id="acme",
        ip_address="203.0.113.1",
        user_agent="pytest",
        auth_context={"sub": "u-1"},
    )
    first = record_prediction_event(
        "credit-risk",
        "1.4.0",
        {"income": 52000, "email": "jane@example.com"},
        {"score": 0.82},
        confidence=0.82,
        decision_outcome="approved",
        actor=actor,
        trace_id="7b1c0d9e-2f4a-4c1e-9d3b-5a6f7e8d9c0b",
        latency_ms=12.5,
        metadata={"ab": "B"},
    )
    attach_explanation(first, "shap", {"income": 0.3}, "Income.")
    attach_explanation(first, "shap", {"income": 0.31}, "Income, revised.")
    second = record_prediction_event(
        "fraud-detector",
        "2025.01",
        {"amount": 1.5},
        None,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        status="failed",
    )
    return {"ids": [str(first.pk), str(second.pk)]}


def orm() -> dict[str, Any]:
    """Rows through our ORM, and our verification of every prediction and explanation."""
    from django.db.models import Model

    from ml_audit import store
    from ml_audit.models import Explanation, ModelVersion, PredictionEvent, RequestingActor

    def rows(model: type[Model]) -> list[dict[str, Any]]:
        fields = model._meta.concrete_fields
        return [
            {field.attname: jsonable(getattr(row, field.attname)) for field in fields}
            for row in model._default_manager.order_by("pk")
        ]

    predictions: dict[str, Any] = {}
    failures: list[str] = []
    for event in PredictionEvent.objects.select_related("model", "actor").order_by("pk"):
        entry: dict[str, Any] = {
            "model_id": jsonable(event.model_id),
            "actor_id": jsonable(event.actor_id),
            "verified": False,
            "error": None,
        }
        try:
            entry["verified"] = store.verify_event(event)
            entry["computed_input_fingerprint"] = store.event_to_record(event).input_fingerprint
        except Exception:  # reported per row
            entry["error"] = traceback.format_exc()
        if not entry["verified"]:
            failures.append(f"prediction {event.pk}: verify_event -> {entry}")
        predictions[str(event.pk)] = entry
    explanations: dict[str, Any] = {}
    for explanation in Explanation.objects.order_by("pk"):
        entry = {"verified": False, "error": None}
        try:
            entry["verified"] = store.verify_explanation(explanation)
        except Exception:  # reported per row
            entry["error"] = traceback.format_exc()
        if not entry["verified"]:
            failures.append(f"explanation {explanation.pk}: verify_explanation -> {entry}")
        explanations[str(explanation.pk)] = entry
    return {
        "ml_audit_modelversion": rows(ModelVersion),
        "ml_audit_requestingactor": rows(RequestingActor),
        "ml_audit_explanation": rows(Explanation),
        "predictions": predictions,
        "explanations": explanations,
        "verify_failures": failures,
    }


def api() -> dict[str, Any]:
    """Every prediction and model version as a superuser reads them through our API."""
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    user = get_user_model().objects.create_superuser(
        username="upgrade-auditor", email="auditor@example.com", password=None
    )
    client = APIClient()
    client.force_authenticate(user=user)
    errors: list[dict[str, Any]] = []

    def get(url: str) -> Any:
        response = client.get(url)
        if response.status_code != 200:
            errors.append(
                {"url": url, "status": response.status_code, "body": response.content[:4000]}
            )
            return None
        return json.loads(response.content)

    def page_through(url: str | None) -> tuple[list[Any], int]:
        results: list[Any] = []
        pages = 0
        while url and pages < MAX_PAGES:
            page = get(url)
            pages += 1
            if page is None:
                break
            results.extend(page["results"])
            url = page.get("next")
        return results, pages

    listed, pages = page_through(f"{API}predictions/?page_size={PAGE_SIZE}")
    detail = {str(item["id"]): get(f"{API}predictions/{item['id']}/") for item in listed}
    models, model_pages = page_through(f"{API}models/?page_size={PAGE_SIZE}")
    trace_ids = sorted({item["trace_id"] for item in listed if item.get("trace_id")})
    traces: dict[str, Any] = {}
    for trace_id in trace_ids:
        found = get(f"{API}traces/{trace_id}/")
        traces[trace_id] = None if found is None else [p["id"] for p in found["predictions"]]
    for error in errors:
        body = error["body"]
        error["body"] = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return {
        "predictions": listed,
        "prediction_pages": pages,
        "detail": detail,
        "models": models,
        "model_pages": model_pages,
        "traces": traces,
        "errors": errors,
    }


class _RolledBack(Exception):
    pass


def append_only() -> dict[str, Any]:
    """Raw-cursor UPDATE/DELETE of stored rows: refused by the triggers, or rolled back."""
    from django.db import DatabaseError, connection, transaction

    def attempt(sql: str) -> dict[str, Any]:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql)
                raise _RolledBack(cursor.rowcount)
        except _RolledBack as done:
            return {"refused": False, "rowcount": done.args[0], "sql": sql}
        except DatabaseError as exc:
            return {"refused": True, "error": f"{type(exc).__name__}: {exc}", "sql": sql}

    prediction = "(SELECT id FROM ml_audit_predictionevent ORDER BY id LIMIT 1)"
    explanation = "(SELECT id FROM ml_audit_explanation ORDER BY id LIMIT 1)"
    return {
        "update_prediction": attempt(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'tampered' "
            f"WHERE id = {prediction}"
        ),
        "delete_prediction": attempt(
            f"DELETE FROM ml_audit_predictionevent WHERE id = {prediction}"
        ),
        "update_explanation": attempt(
            f"UPDATE ml_audit_explanation SET summary_text = 'tampered' WHERE id = {explanation}"
        ),
    }


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--source-root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--seed", action="store_true", help="debug: record a few rows first")
    args = parser.parse_args(argv)

    result: dict[str, Any] = {"stage": "setup", "error": None}
    stages: list[tuple[str, Callable[[], Any]]] = [
        ("migrate", run_migrate),
        ("makemigrations", check_makemigrations),
        *([("seed", seed)] if args.seed else []),
        ("schema", schema),
        ("orm", orm),
        ("api", api),
        ("append_only", append_only),
    ]
    try:
        source_root = args.source_root.resolve()
        sys.path.insert(0, str(source_root))
        database = database_settings(args.database)
        write_project(args.workdir, database)
        sys.path.insert(0, str(args.workdir))
        os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
        import django

        django.setup()
        import ml_audit

        ml_audit_file = Path(str(ml_audit.__file__)).resolve()
        result["ml_audit_file"] = str(ml_audit_file)
        result["django_version"] = django.get_version()
        if not ml_audit_file.is_relative_to(source_root):
            raise RuntimeError(f"ml_audit comes from {ml_audit_file}, not from {source_root}")
        for name, stage in stages:
            result["stage"] = name
            result[name] = stage()
        result["stage"] = "done"
    except BaseException:  # reported in the output, whatever it is
        result["error"] = traceback.format_exc()
    args.output.write_text(
        json.dumps(result, indent=2, sort_keys=True, default=str), encoding="utf-8"
    )
    print(f"stage={result['stage']}")
    if result["error"]:
        print(result["error"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
