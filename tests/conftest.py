from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
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
