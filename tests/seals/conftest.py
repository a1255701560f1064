from __future__ import annotations

from typing import Any

import pytest

from tests.seals.helpers import SEAL_SETTINGS


@pytest.fixture
def sealing(settings: Any) -> dict[str, Any]:
    """A sealing key (and no lag) in ML_AUDIT."""
    values: dict[str, Any] = dict(SEAL_SETTINGS)
    settings.ML_AUDIT = values
    return values
