"""Records for tests: one place for the default shape of a redacted prediction."""

from __future__ import annotations

from typing import Any

from ml_audit.records import ActorPayload, PredictionRecord
from ml_audit.redaction import RedactionPolicy


def redacted(**overrides: Any) -> PredictionRecord:
    """A validated, redacted record; keyword arguments override ``PredictionRecord.create``'s."""
    kwargs: dict[str, Any] = {
        "model_name": "scorer",
        "model_version": "2",
        "features": {"age": 30, "email": "x@example.com"},
        "output": {"score": 0.25},
        "confidence": 0.25,
        "actor": ActorPayload("service", "batch", tenant_id="t1"),
    }
    kwargs.update(overrides)
    return PredictionRecord.create(**kwargs).redact(RedactionPolicy(), frozenset({"features"}))
