from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections

from ml_audit import store
from ml_audit.testing import allow_test_flush


@pytest.fixture(scope="session", autouse=True)
def _flush_through_purge_hatch() -> Iterator[None]:
    with allow_test_flush():
        yield


@pytest.fixture(autouse=True)
def _fresh_id_caches() -> Iterator[None]:
    store.clear_caches()
    yield
    store.clear_caches()


def is_postgres(alias: str = "default") -> bool:
    return connections[alias].vendor == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if is_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run with DATABASE_URL=postgres://...")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
