"""Reason codes: the principal reasons of a decision, in words (``ML_AUDIT["REASON_CODES"]``).

Each new explanation revision of a prediction gets a :class:`~ml_audit.models.ReasonCodes`
row: its strongest contributions against the subject, mapped to codes and texts by the
policy (:mod:`.policy`; the payload shapes read: :mod:`.payload`; storing them:
:mod:`.writer`). See ``docs/reason-codes.md``.

Names are resolved lazily: :mod:`ml_audit.conf` imports :mod:`.policy`, which loads no models.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_PUBLIC = {
    "BackfillResult": "ml_audit.reasons.writer",
    "Derivation": "ml_audit.reasons.policy",
    "Reason": "ml_audit.reasons.policy",
    "ReasonCodePolicy": "ml_audit.reasons.policy",
    "ReasonSet": "ml_audit.reasons.policy",
    "backfill": "ml_audit.reasons.writer",
    "contributions": "ml_audit.reasons.payload",
    "derive_for": "ml_audit.reasons.writer",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'ml_audit.reasons' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return __all__
