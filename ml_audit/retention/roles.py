"""The least-privilege PostgreSQL layout of the audit tables (``manage.py ml_audit_db_roles``).

Four roles:

* **owner** runs ``migrate`` and owns ml_audit's tables and trigger functions. Only an owner
  (or a superuser) can ``ALTER TABLE``, ``DISABLE TRIGGER``, ``DROP TRIGGER`` or replace the
  trigger functions; what it can do is not prevented, it is detected by ``ml_audit_verify``
  (seals). Keep the application off this role.
* **app** (the application's login): ``SELECT`` and ``INSERT`` on the audit tables, ``UPDATE``
  of the model-version provenance columns only, ``SELECT`` on the purge records, ``SELECT``,
  ``INSERT``, ``UPDATE`` on the ingest credentials, ``SELECT`` and ``INSERT`` on the subject
  keys (naming a subject creates its key); no ``DELETE``, ``TRUNCATE`` or DDL anywhere.
* **purge** (``ML_AUDIT["PURGE_ROLE"]``): what ``ml_audit_purge`` needs: ``DELETE`` on the
  predictions, explanations, reviews, outcomes, reason codes and access log (the trigger
  also checks membership of this role), ``INSERT`` on purge records, tombstones and seals;
  and what ``ml_audit_forget`` needs: ``DELETE`` on the subject keys (crypto-shredding),
  ``INSERT`` on the subject erasures.
  Grant it to the operators' logins (``GRANT <purge> TO alice``): ``ml_audit_purge`` and
  ``ml_audit_forget`` then run as it (``SET LOCAL ROLE``).
* **auditor**: ``SELECT`` on every ml_audit table.

The SQL is idempotent (roles created when missing, privileges revoked and granted again) and
valid before ``migrate`` (tables that do not exist yet are skipped): run it once before the
first migration and again after each ``migrate`` that adds tables. It covers ml_audit's tables
only: the project grants its own (sessions, auth, contenttypes, ...) to the app role.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

__all__ = ["RoleNames", "layout_sql", "trigger_purge_role"]

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}").fullmatch

#: Append-only tables the application writes: INSERT + SELECT.
APPEND_TABLES = (
    "ml_audit_predictionevent",
    "ml_audit_explanation",
    "ml_audit_accesslog",
    "ml_audit_seal",
    "ml_audit_sealmember",
    "ml_audit_requestingactor",
    "ml_audit_legalhold",
    "ml_audit_review",
    "ml_audit_outcome",
    "ml_audit_reasoncodes",
)
#: Tables a purge deletes from (reviews, outcomes and reason codes go with their prediction).
PURGED_TABLES = (
    "ml_audit_predictionevent",
    "ml_audit_explanation",
    "ml_audit_accesslog",
    "ml_audit_review",
    "ml_audit_outcome",
    "ml_audit_reasoncodes",
)
#: Tables only a purge appends to.
PURGE_RECORD_TABLES = ("ml_audit_purgerecord", "ml_audit_purgedrow")
SEAL_TABLES = ("ml_audit_seal", "ml_audit_sealmember")
MODEL_VERSION = "ml_audit_modelversion"
#: ModelVersion columns ``register_model_version`` updates. Django's ``update_or_create``
#: also writes ``created_at`` back unchanged; the identity trigger refuses any change of it.
PROVENANCE_COLUMNS = (
    "created_at",
    "framework",
    "build_id",
    "commit_hash",
    "config_snapshot",
    "is_active",
    "updated_at",
)
INGEST_CREDENTIALS = "ml_audit_ingestcredential"
#: Data subjects: the app creates keys, only the purge role deletes one (ml_audit_forget) and
#: records that it did.
SUBJECT_KEYS = "ml_audit_subjectkey"
SUBJECT_ERASURES = "ml_audit_subjecterasure"
#: Functions the migrations create: owned by the owner role.
FUNCTIONS = ("ml_audit_forbid_mutation()", "ml_audit_forbid_identity_change()")


@dataclass(frozen=True)
class RoleNames:
    owner: str = "ml_audit_owner"
    app: str = "ml_audit_app"
    purge: str = "ml_audit_purge"
    auditor: str = "ml_audit_auditor"

    def __post_init__(self) -> None:
        names = [self.owner, self.app, self.purge, self.auditor]
        for name in names:
            if not _IDENTIFIER(name):
                raise ValueError(
                    f"{name!r} is not a plain PostgreSQL role name ([a-z_][a-z0-9_]*, <= 63)"
                )
        if len(set(names)) != len(names):
            raise ValueError("the four roles need four different names")


def layout_sql(roles: RoleNames, tables: Iterable[str], schema: str = "public") -> list[str]:
    """The statements of the layout for ml_audit's ``tables`` (every ``db_table`` of the app;
    tables not listed above get ``SELECT`` only, for the app and the auditor)."""
    tables = sorted(set(tables))
    if not _IDENTIFIER(schema):
        raise ValueError(f"{schema!r} is not a plain schema name")
    o, a, p, r = roles.owner, roles.app, roles.purge, roles.auditor
    everyone = f"{o}, {a}, {p}, {r}"
    sql = [f"-- ml_audit least-privilege layout: owner {o}, app {a}, purge {p}, auditor {r}"]
    for role in (o, a, p, r):
        sql.append(
            f"DO $$ BEGIN IF to_regrole('{role}') IS NULL THEN CREATE ROLE {role} LOGIN; END IF; "
            "END $$"
        )
    sql += [
        f"ALTER ROLE {a} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION",
        f"ALTER ROLE {p} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION",
        f"ALTER ROLE {r} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION",
        # No role inherits another: the app is no member of the purge role, nor of the owner.
        f"REVOKE {o}, {p}, {r} FROM {a}",
        "DO $$ BEGIN EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO "
        + everyone
        + "', current_database()); END $$",
        f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC",
        f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {o}",
        f"GRANT USAGE ON SCHEMA {schema} TO {a}, {p}, {r}",
        f"REVOKE CREATE ON SCHEMA {schema} FROM {a}, {p}, {r}",
    ]
    for table in tables:
        statements = [
            f"ALTER TABLE {table} OWNER TO {o}",
            f"REVOKE ALL ON {table} FROM PUBLIC, {a}, {p}, {r}",
            f"GRANT SELECT ON {table} TO {a}, {p}, {r}",
            *_grants(table, roles),
        ]
        sql.append(_if_table(table, statements))
    # Django's migration check reads django_migrations at start-up.
    sql.append(_if_table("django_migrations", [f"GRANT SELECT ON django_migrations TO {a}, {r}"]))
    for table in tables:
        sql.append(_sequences(table, [a, p]))
    function = import_module("ml_audit.migrations.0009_retention").pg_function(p).strip()
    sql.append(
        "DO $do$ BEGIN IF to_regprocedure('ml_audit_forbid_mutation()') IS NOT NULL THEN "
        f"EXECUTE {_literal(function)}; END IF; END $do$"
    )
    for function_name in FUNCTIONS:
        sql.append(
            f"DO $$ BEGIN IF to_regprocedure('{function_name}') IS NOT NULL THEN "
            f"ALTER FUNCTION {function_name} OWNER TO {o}; "
            f"REVOKE ALL ON FUNCTION {function_name} FROM PUBLIC; END IF; END $$"
        )
    return sql


def _grants(table: str, roles: RoleNames) -> list[str]:
    a, p = roles.app, roles.purge
    grants = []
    if table in APPEND_TABLES:
        grants.append(f"GRANT INSERT ON {table} TO {a}")
    if table == MODEL_VERSION:
        grants.append(f"GRANT INSERT ON {table} TO {a}")
        grants.append(f"GRANT UPDATE ({', '.join(PROVENANCE_COLUMNS)}) ON {table} TO {a}")
    if table == INGEST_CREDENTIALS:
        grants.append(f"GRANT INSERT, UPDATE ON {table} TO {a}")
    if table in PURGED_TABLES:
        grants.append(f"GRANT DELETE ON {table} TO {p}")
    if table in PURGE_RECORD_TABLES or table in SEAL_TABLES:
        grants.append(f"GRANT INSERT ON {table} TO {p}")
    if table == SUBJECT_KEYS:
        grants.append(f"GRANT INSERT ON {table} TO {a}")
        grants.append(f"GRANT DELETE ON {table} TO {p}")
    if table == SUBJECT_ERASURES:
        grants.append(f"GRANT INSERT ON {table} TO {p}")
    return grants


def _if_table(table: str, statements: list[str]) -> str:
    body = " ".join(f"{statement};" for statement in statements)
    return f"DO $$ BEGIN IF to_regclass('{table}') IS NOT NULL THEN {body} END IF; END $$"


def _sequences(table: str, roles: list[str]) -> str:
    """USAGE on the sequence behind ``table``'s id, when it has one (identity or serial)."""
    to = ", ".join(roles)
    return (
        "DO $$ DECLARE s text; BEGIN "
        f"IF to_regclass('{table}') IS NOT NULL THEN "
        f"s := pg_get_serial_sequence('{table}', 'id'); "
        f"IF s IS NOT NULL THEN EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO {to}', s); "
        "END IF; END IF; END $$"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: How the hatch names the purge role (``pg_function`` of migration 0009).
_BAKED_ROLE = re.compile(r"to_regrole\('([^']*)'\)")


def trigger_purge_role(connection: Any) -> str | None:
    """The purge role written into ``ml_audit_forbid_mutation()`` on a PostgreSQL
    ``connection`` (at ``migrate`` time by 0009, or by ``ml_audit_db_roles --apply``); ``None``
    when the function is missing or names no purge role (0009 not applied yet). Raises
    ``django.db.Error`` when the database cannot be reached."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure('ml_audit_forbid_mutation()')"
        )
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return None
    found = _BAKED_ROLE.search(row[0])
    return found.group(1) if found else None
