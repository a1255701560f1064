from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ml_audit.subjects import keys
from tests.subjects.helpers import SUBJECT_SETTINGS


@pytest.fixture(autouse=True)
def _fresh_subject_cache() -> Iterator[None]:
    keys.clear_cache()
    yield
    keys.clear_cache()


@pytest.fixture
def subjects(settings: Any) -> dict[str, Any]:
    """A subject key in ML_AUDIT (and a sealing key, so that trails can be sealed)."""
    values: dict[str, Any] = dict(SUBJECT_SETTINGS)
    settings.ML_AUDIT = values
    return values
