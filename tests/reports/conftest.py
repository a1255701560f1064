from __future__ import annotations

from typing import Any

import pytest

from ml_audit.subjects.keys import clear_cache

from .helpers import History, build_history, settings_with

__all__ = ["History"]


@pytest.fixture(autouse=True)
def _subject_settings(settings: Any) -> None:
    settings.ML_AUDIT = settings_with()
    clear_cache()


@pytest.fixture
def history(db: Any) -> History:
    return build_history()
