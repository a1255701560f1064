from __future__ import annotations

from typing import Any

import pytest

from tests.retention.helpers import RETENTION


@pytest.fixture
def retention(settings: Any) -> dict[str, Any]:
    """A retention policy: 400 days by default, 800 for model "fraud", 200 for the access log."""
    values: dict[str, Any] = {**RETENTION}
    settings.ML_AUDIT = values
    return values
