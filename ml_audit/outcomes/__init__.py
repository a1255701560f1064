"""Outcomes (ground truth): what was observed after a prediction, and how good the model was.

- :func:`record_outcome`, :func:`current_outcome`, :func:`outcome_history` (:mod:`.recording`;
  the rules of a value, a time and the idempotency key: :mod:`.values`);
- the bulk import of a CSV or JSON lines file (:mod:`.bulk`, ``manage.py ml_audit_outcomes``);
- the quality of a model version by week (:mod:`.quality`), drawn by :mod:`.chart` on the
  admin's quality page (:mod:`.admin`) and served by the API (``ml_audit.api.quality``).

See ``docs/oversight.md``. Names are resolved lazily, so importing this package loads no
models.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_PUBLIC = {
    "ImportResult": "ml_audit.outcomes.bulk",
    "MAX_VALUE_CHARS": "ml_audit.outcomes.values",
    "QualityReport": "ml_audit.outcomes.quality",
    "WeekQuality": "ml_audit.outcomes.quality",
    "current_outcome": "ml_audit.outcomes.recording",
    "import_outcomes": "ml_audit.outcomes.bulk",
    "model_quality": "ml_audit.outcomes.quality",
    "outcome_history": "ml_audit.outcomes.recording",
    "record_outcome": "ml_audit.outcomes.recording",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'ml_audit.outcomes' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return __all__
