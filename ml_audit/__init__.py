"""django-ml-audit: an append-only, OpenTelemetry-native audit trail of ML predictions.

Importing this package loads no Django models and no OpenTelemetry code; the public names
below are resolved on first use.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("django-ml-audit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_PUBLIC = {
    "ActorPayload": "ml_audit.records",
    "AppendOnlyError": "ml_audit.exceptions",
    "ConfigurationError": "ml_audit.exceptions",
    "InvalidRecord": "ml_audit.exceptions",
    "MLAuditError": "ml_audit.exceptions",
    "PredictionConflict": "ml_audit.exceptions",
    "PredictionNotFound": "ml_audit.exceptions",
    "attach_explanation": "ml_audit.services",
    "current_outcome": "ml_audit.outcomes.recording",
    "effective_outcome": "ml_audit.oversight.reviews",
    "forget_subject": "ml_audit.subjects",
    "record_outcome": "ml_audit.outcomes.recording",
    "record_prediction_event": "ml_audit.services",
    "record_review": "ml_audit.oversight.reviews",
    "register_model_version": "ml_audit.services",
    "subject_ref": "ml_audit.subjects",
}

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'ml_audit' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return __all__
