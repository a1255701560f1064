"""Where the detectors run beyond features: error types, explanations (always, values only
unless REDACT_PAYLOADS names "explanation")."""

from __future__ import annotations

from typing import Any

import pytest

from ml_audit import store
from ml_audit.services import attach_explanation, record_prediction_event

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"


def test_an_error_type_that_is_not_a_class_path_is_redacted() -> None:
    event = record_prediction_event(
        "m", "1", {"x": 1}, status="failed", error_type=f"Rejected for {EMAIL}"
    )
    assert EMAIL not in event.error_type
    assert event.redaction["paths"]["error_type"] == [""]
    assert store.verify_event(event)
    kept = record_prediction_event(
        "m", "1", {"x": 2}, status="failed", error_type="myapp.errors.Rejected"
    )
    assert kept.error_type == "myapp.errors.Rejected"
    assert "error_type" not in kept.redaction["paths"]


def test_explanation_text_is_scanned_but_weights_keyed_by_feature_names_are_kept() -> None:
    event = record_prediction_event("m", "1", {"x": 1})
    explanation = attach_explanation(
        event,
        method="shap",
        payload={"email": 0.31, "notes": f"contact {EMAIL}"},
        summary_text=f"Flagged because {EMAIL} appeared on a list",
    )
    assert explanation.payload["email"] == 0.31  # a weight, not an address
    assert EMAIL not in explanation.payload["notes"]
    assert EMAIL not in explanation.summary_text
    assert store.verify_explanation(explanation)


def test_with_explanation_in_redact_payloads_the_key_rules_apply_too(settings: Any) -> None:
    settings.ML_AUDIT = {"REDACT_PAYLOADS": ["features", "explanation"]}
    event = record_prediction_event("m", "1", {"x": 1})
    explanation = attach_explanation(event, method="shap", payload={"password": "hunter2"})
    assert explanation.payload["password"] != "hunter2"
