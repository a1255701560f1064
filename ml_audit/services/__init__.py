"""The seed-compatible recording API.

>>> from ml_audit.services import ActorPayload, record_prediction_event, attach_explanation
"""

from ml_audit.records import ActorPayload
from ml_audit.services.explanations import (
    attach_explanation,
    explanation_record,
    resolve_prediction,
)
from ml_audit.services.predictions import record_prediction_event, register_model_version

__all__ = [
    "ActorPayload",
    "attach_explanation",
    "explanation_record",
    "record_prediction_event",
    "register_model_version",
    "resolve_prediction",
]
