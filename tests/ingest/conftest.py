from __future__ import annotations

from collections.abc import Iterator

import pytest

from ml_audit.ingest import metrics
from ml_audit.ingest.auth import issue

SERVICE = "fraud-scorer"


@pytest.fixture(autouse=True)
def _fresh_ingest_counters() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


@pytest.fixture
def token(db: None) -> str:
    """A token of ``SERVICE``, which may write tenants acme and globex and no tenant."""
    return issue(SERVICE, ["acme", "globex", ""])[1]
