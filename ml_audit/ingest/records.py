"""An ``ml_audit`` span as sent → the record this server stores, or the reason it is refused.

Predictions are read as :mod:`ml_audit.otel.conventions` writes them (:func:`decode`), then:

1. **The actor is the sender.** The authenticated service becomes the actor (type
   ``service``); the tenant is the span's ``ml_audit.actor.tenant_id``, which must be one the
   service may write. What the span says of its own actor (type and id), and its auth context,
   are kept as reported, in the row's auth context under ``"ingest"`` (redacted, see 3.).
2. **Checked as a recording call is checked** (:func:`ml_audit.records.revalidated`): types,
   lengths, ids (a W3C trace id), an aware timestamp, JSON payloads, and the subject reference
   ``ml_audit.subject.ref`` when there is one (64 lower-case hex digits: a reference the
   sender made with :func:`ml_audit.subjects.subject_ref` against this trail's database, kept
   as sent; an identifier is refused, as it has not that shape).
3. **Redacted again, here, by this server's policy** and the payloads
   ``ML_AUDIT['REDACT_PAYLOADS']`` names (the auth context always, as it holds what the
   sender reported): a span that says it was
   redacted goes through :func:`ml_audit.otel.spool_lines.reredact` (what its sender already
   replaced stays as it is, anything left is redacted now), a span that does not say so is
   redacted from scratch. No sender can put a value this server's policy redacts in a row.
4. **A new event id**: the row's primary key is this server's (UUIDv7), so no sender can
   collide with, or pose as, another row. A retried span has the same ``prediction_id`` and
   content, so the writer finds it stored and answers "duplicate"; ``ml_audit.event_id`` is not
   needed and not kept. ``ml_audit.timestamp`` defaults to the span's start.

Explanations (``ml_audit.explanation <method>``) carry their whole content in
``ml_audit.explanation.payload`` (JSON): the summary and top attributions that spans carry for
APMs are cut to export limits and cannot stand for the explanation. They are validated
(:meth:`ExplanationRecord.create`) and redacted again (:func:`reredact_explanation`) as
``attach_explanation`` redacts one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from ml_audit.explanation_records import ExplanationRecord
from ml_audit.ids import uuid7
from ml_audit.ingest.auth import Sender
from ml_audit.ingest.spans import EXPLANATION, IncomingSpan
from ml_audit.otel import conventions
from ml_audit.otel.conventions import ATTR, EXPLANATION_SPAN_PREFIX, SCHEMA_VERSION
from ml_audit.otel.spool_lines import reredact, reredact_explanation
from ml_audit.records import MAX_PREDICTION_ID, ActorPayload, PredictionRecord, revalidated
from ml_audit.redaction import RedactionPolicy, redact

__all__ = [
    "EXPLANATION_GENERATED_AT",
    "EXPLANATION_PAYLOAD",
    "Explained",
    "Rejected",
    "explanation",
    "prediction_record",
]

#: The whole explanation payload, JSON (ingest only: local spans do not carry it).
EXPLANATION_PAYLOAD = "ml_audit.explanation.payload"
#: When the explanation was generated (ISO 8601 with a time zone); default: the span's end.
EXPLANATION_GENERATED_AT = "ml_audit.explanation.generated_at"

#: Errors that mean "this span is not a valid record" (anything else is a bug: a 500, so the
#: sender retries and nothing is refused for it).
INVALID_SPAN_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    OverflowError,
    RecursionError,
)

_JSON_ATTRIBUTES = (ATTR.FEATURES, ATTR.OUTPUT, ATTR.METADATA, ATTR.REDACTION)
#: Stands for "not redacted by the sender" while :func:`revalidated` checks the record.
_UNDECLARED = {"policy": "", "paths": {}}
_PLACEHOLDER_EVENT_ID = "00000000-0000-7000-8000-000000000000"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Rejected(Exception):
    """A span this server refuses (counted in ``partial_success``); ``str()`` says why."""


@dataclasses.dataclass(frozen=True)
class Explained:
    """An explanation span, read: the prediction it explains and the record to append."""

    prediction_id: str
    record: ExplanationRecord
    span_id: str


def _time(nanoseconds: int) -> dt.datetime | None:
    if nanoseconds <= 0:
        return None
    return _EPOCH + dt.timedelta(microseconds=nanoseconds // 1000)


def _describe(span: IncomingSpan) -> str:
    prediction_id = span.attributes.get(ATTR.PREDICTION_ID)
    if isinstance(prediction_id, str) and prediction_id:
        return f"{span.kind} {prediction_id[:MAX_PREDICTION_ID]!r}"
    return f"span {span.span_id or '?'} {span.name[:100]!r}"


def reason(span: IncomingSpan, problem: str) -> str:
    """The message of a refused span: which one, and why."""
    return f"{_describe(span)}: {problem}"


def _text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise Rejected(f"{name} must be a string, not {type(value).__name__}")
    return value


def prediction_record(
    span: IncomingSpan, sender: Sender, policy: RedactionPolicy, payloads: frozenset[str]
) -> PredictionRecord:
    """The record to store for a prediction span (see the module docstring).

    Raises :class:`Rejected` (or one of :data:`INVALID_SPAN_ERRORS`) for a span that cannot
    be stored.
    """
    attributes = dict(span.attributes)
    tenant = _text(ATTR.TENANT_ID, attributes.pop(ATTR.TENANT_ID, None))
    if not sender.may_write(tenant):
        shown = repr(tenant) if tenant else "no tenant"
        raise Rejected(f"service {sender.service!r} may not write {shown}")
    if len(span.trace_id) != 32 or len(span.span_id) != 16:
        raise Rejected("traceId must be 16 bytes and spanId 8 bytes")
    reported: dict[str, Any] = {}
    for attribute, key in ((ATTR.ACTOR_TYPE, "actor_type"), (ATTR.ACTOR_ID, "actor_id")):
        value = attributes.pop(attribute, None)
        if value is not None:
            reported[key] = _text(attribute, value)
    ip_address = attributes.pop(ATTR.CLIENT_ADDRESS, None)
    user_agent = attributes.pop(ATTR.USER_AGENT, None)
    context: dict[str, Any] = {"service": sender.service}
    if reported:
        context["reported_actor"] = reported
    reported_context = attributes.pop(ATTR.AUTH_CONTEXT, None)
    if reported_context is not None:
        context["reported_auth_context"] = json.loads(_text(ATTR.AUTH_CONTEXT, reported_context))
    for name in _JSON_ATTRIBUTES:
        value = attributes.get(name)
        if value is not None and not isinstance(value, str):
            raise Rejected(f"{name} must be a JSON string, not {type(value).__name__}")
    attributes.setdefault(ATTR.SCHEMA_VERSION, SCHEMA_VERSION)
    attributes[ATTR.EVENT_ID] = _PLACEHOLDER_EVENT_ID
    if ATTR.TIMESTAMP not in attributes:
        started = _time(span.start_time_unix_nano)
        if started is None:
            raise Rejected(f"no {ATTR.TIMESTAMP} and no span start time")
        attributes[ATTR.TIMESTAMP] = started.isoformat()
    decoded = conventions.decode(
        attributes,
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
    )
    auth_context: dict[str, Any] = {"ingest": context}
    context_paths: tuple[str, ...] = ()
    if "auth_context" not in payloads:
        # What the sender reported is redacted whatever REDACT_PAYLOADS says (here, once;
        # with "auth_context" in it, the record's redaction below does it).
        result = redact(auth_context, policy)
        auth_context, context_paths = result.value, result.paths
    actor = ActorPayload(
        "service",
        sender.service,
        tenant_id=tenant or None,
        ip_address=_text(ATTR.CLIENT_ADDRESS, ip_address) or None,
        user_agent=_text(ATTR.USER_AGENT, user_agent) or None,
        auth_context=auth_context,
    )
    declared = decoded.redaction
    record = revalidated(
        decoded.evolve(event_id=uuid7(), actor=actor, redaction=declared or dict(_UNDECLARED))
    )
    if declared is None:
        record = record.evolve(redaction=None).redact(policy, payloads)
    else:
        record = reredact(record, policy, payloads)
    if context_paths:
        assert record.redaction is not None
        paths = dict(record.redaction["paths"])
        paths["auth_context"] = sorted({*paths.get("auth_context", ()), *context_paths})
        record = record.evolve(redaction={"policy": policy.version, "paths": paths})
    return record


def explanation(
    span: IncomingSpan,
    policy: RedactionPolicy,
    payloads: frozenset[str],
    *,
    max_payload_bytes: int | None,
) -> Explained:
    """The explanation to append for an explanation span (see the module docstring)."""
    assert span.kind == EXPLANATION
    attributes = span.attributes
    prediction_id = attributes.get(ATTR.PREDICTION_ID)
    if not isinstance(prediction_id, str) or not prediction_id.strip():
        raise Rejected(f"an explanation span needs {ATTR.PREDICTION_ID}")
    if len(prediction_id) > MAX_PREDICTION_ID:
        raise Rejected(f"{ATTR.PREDICTION_ID} is over {MAX_PREDICTION_ID} characters")
    method = attributes.get(ATTR.EXPLANATION_METHOD)
    if method is None:
        method = span.name[len(EXPLANATION_SPAN_PREFIX) + 1 :]
    payload_text = attributes.get(EXPLANATION_PAYLOAD)
    if payload_text is None:
        raise Rejected(
            f"an explanation span must carry the whole explanation as JSON in "
            f"{EXPLANATION_PAYLOAD} (the summary and top attributions are cut to export limits)"
        )
    payload = json.loads(_text(EXPLANATION_PAYLOAD, payload_text))
    generated_text = attributes.get(EXPLANATION_GENERATED_AT)
    generated_at: dt.datetime | None
    if generated_text is not None:
        generated_at = dt.datetime.fromisoformat(_text(EXPLANATION_GENERATED_AT, generated_text))
    else:
        generated_at = _time(span.end_time_unix_nano) or _time(span.start_time_unix_nano)
        if generated_at is None:
            raise Rejected(f"no {EXPLANATION_GENERATED_AT} and no span time")
    record = ExplanationRecord.create(
        method=method,
        payload=payload,
        summary_text=attributes.get(ATTR.EXPLANATION_SUMMARY, ""),
        method_version=attributes.get(ATTR.EXPLANATION_METHOD_VERSION, ""),
        status=attributes.get(ATTR.EXPLANATION_STATUS, "success"),
        generated_at=generated_at,
        max_payload_bytes=max_payload_bytes,
    )
    record = reredact_explanation(record, policy, keys="explanation" in payloads)
    return Explained(prediction_id, record, span.span_id)
