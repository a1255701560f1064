from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ml_audit import store
from ml_audit.otel import setup
from ml_audit.testing import allow_test_flush

# The process-wide provider every test shares (OpenTelemetry allows setting it once), standing
# in for the application's own set-up: its exporter is what "the APM" receives.
EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(PROVIDER)


@pytest.fixture(scope="session", autouse=True)
def _flush_through_purge_hatch() -> Iterator[None]:
    with allow_test_flush():
        yield


@pytest.fixture(autouse=True)
def _fresh_id_caches() -> Iterator[None]:
    store.clear_caches()
    yield
    store.clear_caches()


@pytest.fixture(autouse=True)
def _isolated_audit_pipeline(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Each test gets its own spool directory and its own audit processor.

    Without this a record spooled by one test could be replayed into another, and a worker
    thread could outlive its test.
    """
    settings.BASE_DIR = tmp_path
    yield
    setup.uninstall()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """The spans exported by the global provider during this test."""
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def is_postgres(alias: str = "default") -> bool:
    return connections[alias].vendor == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if is_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run with DATABASE_URL=postgres://...")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


SQLITE_FILE_ALIAS = "threads_sqlite_file"
SQLITE_FILE_TIMEOUT = 60  # seconds a thread waits for SQLite's write lock


@pytest.fixture
def sqlite_file_alias(tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    """A migrated SQLite file of this test's own that every thread opens its own connection
    to. Never the in-memory test database: its shared cache fails a second writer at once
    (``database table is locked``) where a file makes it wait for the lock, as a deployment's
    does. Not through a Django test case, which would refuse connections to an alias it was
    not told of. Skips on PostgreSQL, whose tests use the test database itself."""
    if connections["default"].vendor != "sqlite":
        pytest.skip("SQLite's write lock; on PostgreSQL the _on_postgresql variant runs")
    with django_db_blocker.unblock():
        connections.settings[SQLITE_FILE_ALIAS] = {
            **connections.settings["default"],
            "NAME": str(tmp_path / "threads.sqlite3"),
            "OPTIONS": {"timeout": SQLITE_FILE_TIMEOUT},
            "TEST": {"NAME": str(tmp_path / "threads.sqlite3")},
        }
        try:
            call_command("migrate", database=SQLITE_FILE_ALIAS, verbosity=0)
            yield SQLITE_FILE_ALIAS
        finally:
            connections[SQLITE_FILE_ALIAS].close()
            del connections[SQLITE_FILE_ALIAS]
            del connections.settings[SQLITE_FILE_ALIAS]
