"""0.2.0's module path of the recording API: ``from ml_audit.services.recording import ...``.

The functions live in :mod:`ml_audit.services.predictions`; this module names them where
django-ml-audit 0.2.0 had them, so code written against it keeps importing.
"""

from ml_audit.records import ActorPayload
from ml_audit.services.predictions import record_prediction_event

__all__ = ["ActorPayload", "record_prediction_event"]
