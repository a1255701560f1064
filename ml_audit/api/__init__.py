"""The read-only REST API over the audit trail (Django REST framework + django-filter).

Mount it with ``path("api/ml-audit/", include("ml_audit.api.urls"))``; see :mod:`.views` for the
endpoints, :mod:`.filters` for the query parameters and :mod:`.permissions` for who may read.
Needs the ``drf`` extra (``pip install "django-ml-audit[drf]"``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: 0.2.0's ``from ml_audit.api import PredictionEventSerializer``, resolved on first use so
#: that importing this package does not import DRF or the models.
_SERIALIZERS = (
    "ExplanationSerializer",
    "ModelVersionSerializer",
    "PredictionEventSerializer",
    "RequestingActorSerializer",
)

__all__ = list(_SERIALIZERS)


def __getattr__(name: str) -> Any:
    if name in _SERIALIZERS:
        return getattr(import_module("ml_audit.api.serializers"), name)
    raise AttributeError(f"module 'ml_audit.api' has no attribute {name!r}")
