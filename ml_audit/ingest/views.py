"""``POST …/v1/traces``: the OTLP/HTTP trace receiver of the audit trail.

The checks, in order (the first that fails answers):

====  ==========================================================================================
405   not a POST
401   no token, or an unknown or revoked one (``WWW-Authenticate: Bearer``); nothing is read
      or stored
415   a content type other than protobuf or JSON, or an encoding other than gzip
429   ``INGEST_MAX_CONCURRENCY`` requests are already being handled by this process
      (``Retry-After``)
411   a chunked body (no ``Content-Length``) that this WSGI server cannot read (Django's
      ``runserver``; gunicorn and ASGI servers can)
413   the body is over ``INGEST_MAX_BODY_BYTES``, as sent or once decompressed
400   the body is not what its headers say (gzip, protobuf, OTLP JSON)
503   the database is unavailable (``Retry-After``); the sender retries the whole request and
      what was already written is found again as duplicates
200   ``ExportTraceServiceResponse``: every audit span is stored (or was already, identically);
      ``partial_success`` counts and explains the audit spans refused (invalid, conflicting,
      of a tenant the service may not write) and mentions the other spans, ignored
====  ==========================================================================================

The write is synchronous: a 200 means the rows are committed. The view is never wrapped in
``ATOMIC_REQUESTS``' transaction, so that it is the writer's transaction that commits them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ml_audit.conf import audit_settings
from ml_audit.ingest import metrics
from ml_audit.ingest.auth import Sender, authenticate, token_from_request
from ml_audit.ingest.decode import (
    JSON,
    PROTOBUF,
    BodyError,
    content_encoding,
    decompress,
    media_type,
    parse,
    read_body,
)
from ml_audit.ingest.persist import Tally, Unavailable, write_explanations, write_predictions
from ml_audit.ingest.records import (
    INVALID_SPAN_ERRORS,
    Explained,
    Rejected,
    explanation,
    prediction_record,
    reason,
)
from ml_audit.ingest.responses import error_response, export_response
from ml_audit.ingest.spans import PREDICTION, sort_spans
from ml_audit.otel.writes import is_connection_error
from ml_audit.records import PredictionRecord

__all__ = ["GATE", "traces"]

logger = logging.getLogger("ml_audit.ingest")

#: Reasons quoted in ``partial_success.error_message`` (the count covers them all).
_REASONS_SHOWN = 5
_REASON_LENGTH = 300


class _Gate:
    """At most ``limit`` requests inside at once in this process (429 beyond)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0

    def enter(self, limit: int) -> bool:
        with self._lock:
            if self._inside >= limit:
                return False
            self._inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._inside -= 1

    @property
    def inside(self) -> int:
        return self._inside

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0


GATE = _Gate()
os.register_at_fork(after_in_child=GATE._reset_after_fork)


def _media_hint(request: HttpRequest) -> str | None:
    media = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    return media if media in (PROTOBUF, JSON) else None


def _unavailable(media: str | None, what: str, exc: BaseException) -> HttpResponse:
    logger.error("ml_audit: ingest: the audit database is unavailable (%s): %s", what, exc)
    return error_response(
        503,
        "the audit database is unavailable; retry after the time Retry-After gives",
        media=media,
        retry_after=audit_settings.INGEST_RETRY_AFTER_SECONDS,
    )


def _non_atomic(view: Callable[[HttpRequest], HttpResponse]) -> Callable[..., HttpResponse]:
    for alias in settings.DATABASES:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view


@csrf_exempt
@_non_atomic
def traces(request: HttpRequest) -> HttpResponse:
    """The OTLP/HTTP trace receiver (see the module docstring)."""
    hint = _media_hint(request)
    if request.method != "POST":
        return error_response(405, "send spans with POST", media=hint, headers={"Allow": "POST"})
    try:
        sender = authenticate(token_from_request(request))
    except DatabaseError as exc:
        if not is_connection_error(exc):
            raise
        return _unavailable(hint, "authenticating", exc)
    if sender is None:
        return error_response(
            401,
            "missing, unknown or revoked ingest token: send 'Authorization: Bearer <token>'",
            media=hint,
            headers={"WWW-Authenticate": 'Bearer realm="ml_audit ingest"'},
        )
    try:
        media = media_type(request)
        encoding = content_encoding(request)
    except BodyError as exc:
        return error_response(exc.status, exc.message, media=hint)
    if not GATE.enter(audit_settings.INGEST_MAX_CONCURRENCY):
        return error_response(
            429,
            f"more than {audit_settings.INGEST_MAX_CONCURRENCY} ingest requests at once; "
            "retry after the time Retry-After gives",
            media=media,
            retry_after=audit_settings.INGEST_RETRY_AFTER_SECONDS,
        )
    try:
        return _ingest(request, sender, media, encoding)
    finally:
        GATE.leave()


def _ingest(request: HttpRequest, sender: Sender, media: str, encoding: str) -> HttpResponse:
    limit = audit_settings.INGEST_MAX_BODY_BYTES
    try:
        message = parse(decompress(read_body(request, limit), encoding, limit), media)
    except BodyError as exc:
        return error_response(exc.status, exc.message, media=media)
    found = sort_spans(message)
    del message
    policy = audit_settings.redaction_policy
    payloads = audit_settings.REDACT_PAYLOADS
    max_payload = audit_settings.MAX_PAYLOAD_BYTES
    tally = Tally()
    predictions: list[PredictionRecord] = []
    explanations: list[Explained] = []
    for span in found.audit:
        try:
            if span.kind == PREDICTION:
                predictions.append(prediction_record(span, sender, policy, payloads))
            else:
                explanations.append(
                    explanation(span, policy, payloads, max_payload_bytes=max_payload)
                )
        except Rejected as exc:
            tally.rejected.append(reason(span, str(exc)))
        except INVALID_SPAN_ERRORS as exc:
            tally.rejected.append(reason(span, f"invalid: {exc}"))
    try:
        write_predictions(predictions, tally, using=None)
        write_explanations(explanations, sender, tally, using=None)
    except Unavailable as exc:
        return _unavailable(media, f"writing {len(found.audit)} spans of {sender.service}", exc)
    rejected = len(tally.rejected)
    logger.info(
        "ml_audit: ingest from %s: %d stored, %d duplicates, %d rejected, %d ignored",
        sender.service,
        tally.stored,
        tally.duplicates,
        rejected,
        found.ignored,
    )
    metrics.count(
        stored=tally.stored, duplicates=tally.duplicates, rejected=rejected, ignored=found.ignored
    )
    if rejected:
        logger.warning(
            "ml_audit: ingest from %s: %d of %d audit spans rejected: %s",
            sender.service,
            rejected,
            len(found.audit),
            "; ".join(tally.rejected[:_REASONS_SHOWN]),
        )
    return export_response(
        media, rejected=rejected, message=_summary(tally, len(found.audit), found.ignored)
    )


def _summary(tally: Tally, audit_spans: int, ignored: int) -> str:
    """``partial_success.error_message``: what was refused and why, what was ignored."""
    parts = []
    if tally.rejected:
        shown = "; ".join(text[:_REASON_LENGTH] for text in tally.rejected[:_REASONS_SHOWN])
        more = len(tally.rejected) - _REASONS_SHOWN
        parts.append(
            f"{len(tally.rejected)} of {audit_spans} ml_audit spans rejected: {shown}"
            + (f"; and {more} more" if more > 0 else "")
        )
    if ignored:
        parts.append(
            f"{ignored} span(s) ignored: not ml_audit prediction or explanation spans "
            "(only those are audited)"
        )
    return ". ".join(parts)
