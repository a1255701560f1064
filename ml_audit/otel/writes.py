"""Writing records to the database from the audit writer: untraced, retried, classified.

Used by :mod:`ml_audit.otel.processor` and by ``manage.py ml_audit_replay``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from ml_audit import store

__all__ = ["in_atomic", "is_connection_error", "log_conflict", "run_untraced"]

logger = logging.getLogger("ml_audit.otel")


def is_connection_error(exc: BaseException) -> bool:
    """Whether a write failed because of the database connection, not the records."""
    return isinstance(exc, OperationalError | InterfaceError)


_T = TypeVar("_T")


def run_untraced(call: Callable[..., _T], *args: Any, using: str | None, **kwargs: Any) -> _T:
    """``call(*args, using=using, **kwargs)`` with OpenTelemetry instrumentation suppressed
    (the library never traces its own writes); after a database error the connection of
    ``using`` is closed (outside the caller's transaction) so that the next attempt reconnects."""
    token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        return call(*args, using=using, **kwargs)
    except DatabaseError:
        with suppress(Exception):
            connection = connections[store.resolve_alias(using)]
            if not connection.in_atomic_block:
                connection.close()
        raise
    finally:
        detach(token)


def in_atomic(using: str | None) -> bool:
    try:
        return connections[store.resolve_alias(using)].in_atomic_block
    except Exception:
        return False


def log_conflict(conflict: Any) -> None:
    logger.error(
        "ml_audit: prediction %s not written: its prediction_id is already stored with "
        "different content (differs in: %s)",
        conflict.prediction_id,
        ", ".join(conflict.fields) or "unknown",
    )
