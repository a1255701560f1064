"""Exceptions raised by ml_audit.

Every exception derives from :class:`MLAuditError` and from the closest built-in or Django
base class, so existing ``except ValueError`` / ``except ObjectDoesNotExist`` handlers keep
working.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, ValidationError
from django.db import NotSupportedError

__all__ = [
    "AppendOnlyError",
    "ConfigurationError",
    "InvalidRecord",
    "MLAuditError",
    "PredictionConflict",
    "PredictionNotFound",
]


class MLAuditError(Exception):
    """Base class of every error raised by ml_audit."""


class InvalidRecord(MLAuditError, ValueError):
    """An argument of a recording call is invalid.

    ``field`` names the offending argument (dotted for nested values, e.g. ``actor.actor_type``).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class PredictionConflict(MLAuditError, ValueError):
    """A prediction with this ``prediction_id`` already exists with different content.

    ``prediction_id`` is an idempotency key: recording the same content twice returns the
    existing row, recording different content under the same id is refused so that history is
    never rewritten. ``fields`` lists the fields whose values differ.
    """

    def __init__(self, prediction_id: str, fields: tuple[str, ...] = ()) -> None:
        self.prediction_id = prediction_id
        self.fields = tuple(fields)
        detail = f" (differs in: {', '.join(self.fields)})" if self.fields else ""
        super().__init__(
            f"prediction_id {prediction_id!r} is already recorded with different content{detail}; "
            "use a new prediction_id for a new prediction"
        )


class PredictionNotFound(MLAuditError, ObjectDoesNotExist):
    """No prediction matches the given instance, UUID primary key or ``prediction_id``."""


class AppendOnlyError(MLAuditError, NotSupportedError, ValidationError):
    """An update or delete of an append-only audit row was attempted.

    Also a ``django.core.exceptions.ValidationError``, the type django-ml-audit 0.2.0 raised
    for the same refusal, so its callers' ``except ValidationError`` keeps working.
    """

    def __init__(self, message: str) -> None:
        ValidationError.__init__(self, message, code="append_only")

    def __str__(self) -> str:
        return str(self.message)

    def __repr__(self) -> str:
        return f"AppendOnlyError({self.message!r})"


class ConfigurationError(MLAuditError, ImproperlyConfigured):
    """ml_audit settings are invalid; the message says which key and how to fix it."""
