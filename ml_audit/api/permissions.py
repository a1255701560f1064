"""Who may read the audit trail through the API.

Secure by default: every endpoint requires an authenticated user holding
``ml_audit.view_predictionevent`` (:class:`CanViewPredictions`). ``ML_AUDIT
['API_PERMISSION_CLASSES']`` replaces that list (DRF's own ``DEFAULT_PERMISSION_CLASSES`` is
not used by these views, so a project-wide ``AllowAny`` cannot open the audit trail by accident).

The per-request context of a prediction (client IP, user agent, auth context) is personal data
beyond the prediction itself, so it is shown only to users who also hold
:data:`REQUEST_CONTEXT_PERMISSION`. That is the model permission ``ml_audit.view_requestingactor``
(who asked, and from where) rather than a custom permission, because a custom permission would
need a migration; grant it to auditors who may see where requests came from.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError

__all__ = [
    "READ_PERMISSION",
    "REQUEST_CONTEXT_PERMISSION",
    "CanViewPredictions",
    "can_view_request_context",
    "checks_objects",
    "configured_permission_classes",
]

READ_PERMISSION = "ml_audit.view_predictionevent"
REQUEST_CONTEXT_PERMISSION = "ml_audit.view_requestingactor"


class CanViewPredictions(BasePermission):
    """Read-only access for authenticated users holding ``ml_audit.view_predictionevent``."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and request.method in ("GET", "HEAD", "OPTIONS")
            and user.has_perm(READ_PERMISSION)
        )


def checks_objects(permission_objects: list[Any]) -> bool:
    """Whether any of these permission objects may refuse a single object, i.e. defines its
    own ``has_object_permission`` (composed permissions count as doing so).

    :class:`CanViewPredictions`, like DRF's ``BasePermission``, allows every object it was
    asked about; a view may then skip building the model instance DRF would hand it.
    """
    return any(
        type(permission).has_object_permission is not BasePermission.has_object_permission
        for permission in permission_objects
    )


def can_view_request_context(request: Request) -> bool:
    """Whether ``client_ip``, ``user_agent`` and ``auth_context`` are shown to this request."""
    user = request.user
    return bool(user and user.is_authenticated and user.has_perm(REQUEST_CONTEXT_PERMISSION))


def configured_permission_classes() -> list[Any]:
    """The classes named by ``ML_AUDIT['API_PERMISSION_CLASSES']``, imported.

    Entries are permission classes or composed permissions (``IsAuthenticated & MyCheck``).
    """
    classes: list[Any] = []
    for entry in audit_settings.API_PERMISSION_CLASSES:
        cls: Any = entry
        if isinstance(entry, str):
            try:
                cls = import_string(entry)
            except ImportError as exc:
                raise ConfigurationError(
                    f"ML_AUDIT['API_PERMISSION_CLASSES'] entry {entry!r} cannot be imported: {exc}"
                ) from exc
        if not callable(cls):
            raise ConfigurationError(
                f"ML_AUDIT['API_PERMISSION_CLASSES'] entry {entry!r} is not a DRF permission class."
            )
        classes.append(cls)
    return classes
