"""Stand-alone Django set-up shared by the benchmarks: SQLite file or DATABASE_URL."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import django
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_features(i: int) -> dict[str, Any]:
    """The benchmarks' 20 features: 18 floats, a country, and an e-mail that gets redacted."""
    values: dict[str, Any] = {f"f{j:02d}": (i * 31 + j) % 97 / 7 for j in range(18)}
    values["country"] = "DE"
    values["email"] = f"user{i}@example.com"
    return values


def setup() -> str:
    """Configure Django, migrate a fresh database, return a label of the backend."""
    from tests.settings import database_from_url

    url = os.environ.get("DATABASE_URL", "")
    if url:
        database = database_from_url(url)
        database["NAME"] = database["NAME"] + "_bench"
        label = "postgresql"
    else:
        path = Path(tempfile.mkdtemp(prefix="ml-audit-bench-")) / "bench.sqlite3"
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
        label = "sqlite"
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="benchmark",
        DATABASES={"default": database},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "ml_audit"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    if label == "postgresql":
        _recreate_postgres_database(database)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return label


def setup_postgres(name: str, suffix: str, ml_audit: dict[str, Any], *, recreate: bool) -> None:
    """Configure Django on ``DATABASE_URL`` (PostgreSQL only; ``name`` says who needs it) with
    the database ``<name of the URL's database><suffix>``, recreated when ``recreate``, and
    ``ML_AUDIT = ml_audit``, migrated."""
    from tests.settings import database_from_url

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(f"{name} needs PostgreSQL: set DATABASE_URL=postgres://...")
    database = database_from_url(url)
    database["NAME"] = database["NAME"] + suffix
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        SECRET_KEY="benchmark",
        DATABASES={"default": database},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "ml_audit"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ML_AUDIT=ml_audit,
    )
    if recreate or not _database_exists(database):
        _recreate_postgres_database(database)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _recreate_postgres_database(database: dict[str, str]) -> None:
    with _server_connection(database) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database["NAME"]}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database["NAME"]}"')


def _database_exists(database: dict[str, Any]) -> bool:
    with _server_connection(database) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database["NAME"]])
        return found.fetchone() is not None


def _server_connection(database: dict[str, Any]) -> Any:
    """An autocommit connection to the server of ``database`` (its ``postgres`` database), for
    creating and looking up databases."""
    import psycopg

    return psycopg.connect(
        dbname="postgres",
        user=database["USER"] or None,
        password=database["PASSWORD"] or None,
        host=database["HOST"] or None,
        port=database["PORT"] or None,
        autocommit=True,
    )
