"""Span conventions: names, the ``ml_audit.*`` attributes, and encode/decode between them.

A prediction is a span named ``ml_audit.prediction <model_name>``; an explanation a span named
``ml_audit.explanation <method>``, a child of its prediction's span (or, attached from another
trace, linked to it; :func:`encode_explanation`). docs/SPAN_ATTRIBUTES.md lists every
attribute. :func:`encode` turns a
redacted :class:`~ml_audit.records.PredictionRecord` into span attributes and :func:`decode`
turns them back: ``decode(encode(r), ids) == r`` (tested), as long as no attribute limit cut
them and payload export is on. The processor does not depend on that: it persists the record
handed over with the span (see :mod:`ml_audit.otel.pending`), so limits and payload settings
only shape what the APM sees.

Payload attributes (features, output, metadata, auth context, redaction summary) are JSON
strings. Standard attributes are used where one fits: ``client.address``,
``user_agent.original``, ``error.type``. A prediction that names its data subject carries its
pseudonymous reference, ``ml_audit.subject.ref``, with the payloads (left out with them when
``EXPORT_PAYLOADS`` is off); the subject's identifier is on no span (docs/subjects.md).

With ``"openinference"`` in ``ML_AUDIT['SPAN_CONVENTIONS']`` (the default) both kinds of span
also carry the OpenInference attributes that Arize Phoenix renders (span kind, input and
output, metadata, tags; see :mod:`ml_audit.otel.openinference`). They repeat, for the APM,
values the ``ml_audit.*`` attributes already carry (the same strings, never serialised twice);
:func:`decode` ignores them.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from opentelemetry.util.types import AttributeValue

from ml_audit.conf import audit_settings
from ml_audit.otel import openinference as oi
from ml_audit.records import ActorPayload, PredictionRecord

_std_dumps: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode


def _make_dumps() -> Callable[[Any], str]:
    try:  # optional accelerator (pip install django-ml-audit[fast]): ~10x faster here
        import orjson
    except ImportError:  # pragma: no cover - exercised where orjson is not installed
        return _std_dumps

    def dumps(value: Any) -> str:
        try:
            return orjson.dumps(value).decode()
        except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
            return _std_dumps(value)

    return dumps


_dumps = _make_dumps()

__all__ = [
    "ATTR",
    "EXPLANATION_SPAN_PREFIX",
    "PAYLOAD_ATTRIBUTES",
    "PREDICTION_SPAN_PREFIX",
    "SCHEMA_VERSION",
    "decode",
    "decode_span",
    "encode",
    "encode_explanation",
    "format_span_id",
    "format_trace_id",
    "is_prediction_span",
    "prediction_span_name",
]

SCHEMA_VERSION = 1
PREDICTION_SPAN_PREFIX = "ml_audit.prediction"
EXPLANATION_SPAN_PREFIX = "ml_audit.explanation"
_PREDICTION_SPAN_START = PREDICTION_SPAN_PREFIX + " "


class ATTR:
    """Attribute names. Everything of ours is under ``ml_audit.``."""

    SCHEMA_VERSION = "ml_audit.schema_version"
    EVENT_ID = "ml_audit.event_id"
    PREDICTION_ID = "ml_audit.prediction_id"
    TIMESTAMP = "ml_audit.timestamp"
    MODEL_NAME = "ml_audit.model.name"
    MODEL_VERSION = "ml_audit.model.version"
    ENVIRONMENT = "ml_audit.environment"
    DECISION_OUTCOME = "ml_audit.decision_outcome"
    CONFIDENCE = "ml_audit.confidence"
    STATUS = "ml_audit.status"
    ERROR_MESSAGE = "ml_audit.error.message"
    LATENCY_MS = "ml_audit.latency_ms"
    ACTOR_TYPE = "ml_audit.actor.type"
    ACTOR_ID = "ml_audit.actor.id"
    TENANT_ID = "ml_audit.actor.tenant_id"
    AUTH_CONTEXT = "ml_audit.actor.auth_context"
    FEATURES = "ml_audit.features"
    OUTPUT = "ml_audit.output"
    METADATA = "ml_audit.metadata"
    REDACTION = "ml_audit.redaction"
    CORRELATION_ID = "ml_audit.correlation_id"
    #: The data subject's pseudonymous reference (ml_audit.subjects; never the identifier).
    SUBJECT_REF = "ml_audit.subject.ref"
    # Explanation spans
    EXPLANATION_METHOD = "ml_audit.explanation.method"
    EXPLANATION_REVISION = "ml_audit.explanation.revision"
    EXPLANATION_STATUS = "ml_audit.explanation.status"
    EXPLANATION_METHOD_VERSION = "ml_audit.explanation.method_version"
    #: The redacted summary text, cut to EXPORT_MAX_ATTRIBUTE_LENGTH.
    EXPLANATION_SUMMARY = "ml_audit.explanation.summary"
    #: JSON {feature: value} of the largest attributions by absolute value (at most 10).
    EXPLANATION_TOP_ATTRIBUTIONS = "ml_audit.explanation.top_attributions"
    # OpenTelemetry semantic conventions
    CLIENT_ADDRESS = "client.address"
    USER_AGENT = "user_agent.original"
    ERROR_TYPE = "error.type"


#: Attributes that carry payload content; left out of spans when payload export is off.
PAYLOAD_ATTRIBUTES = frozenset(
    {
        ATTR.FEATURES,
        ATTR.OUTPUT,
        ATTR.METADATA,
        ATTR.AUTH_CONTEXT,
        ATTR.SUBJECT_REF,
        ATTR.EXPLANATION_SUMMARY,
        ATTR.EXPLANATION_TOP_ATTRIBUTIONS,
    }
)


def prediction_span_name(model_name: str) -> str:
    return f"{PREDICTION_SPAN_PREFIX} {model_name}"


def is_prediction_span(name: str) -> bool:
    """Cheap test on the span name (attributes may have been dropped by a count limit)."""
    return name.startswith(_PREDICTION_SPAN_START) or name == PREDICTION_SPAN_PREFIX


def format_trace_id(value: int) -> str:
    return f"{value:032x}" if value else ""


def format_span_id(value: int) -> str:
    return f"{value:016x}" if value else ""


def _json(value: Any, max_length: int | None) -> str:
    # Not canonical_json: key order does not matter to a reader, and sorting costs time on
    # the request thread.
    text = _dumps(value)
    if max_length is not None and len(text) > max_length:
        # Mark the cut so that nobody mistakes an exported prefix for the whole payload.
        return _cut(text, max_length)
    return text


#: (attribute, record field) of the optional attributes, in the order encode() writes them
#: (unrolled there; tests/otel/test_openinference.py holds the two equal).
_OPTIONAL_RECORD_ATTRIBUTES = (
    (ATTR.ENVIRONMENT, "environment"),
    (ATTR.DECISION_OUTCOME, "decision_outcome"),
    (ATTR.CONFIDENCE, "confidence"),
    (ATTR.LATENCY_MS, "latency_ms"),
    (ATTR.ERROR_TYPE, "error_type"),
    (ATTR.ERROR_MESSAGE, "error_message"),
    (ATTR.CORRELATION_ID, "correlation_id"),
)
#: (attribute, actor field), likewise.
_OPTIONAL_ACTOR_ATTRIBUTES = (
    (ATTR.ACTOR_TYPE, "actor_type"),
    (ATTR.ACTOR_ID, "actor_id"),
    (ATTR.TENANT_ID, "tenant_id"),
    (ATTR.CLIENT_ADDRESS, "ip_address"),
    (ATTR.USER_AGENT, "user_agent"),
)


def openinference_enabled() -> bool:
    """Whether ``ML_AUDIT['SPAN_CONVENTIONS']`` names ``"openinference"`` (its default, True,
    where Django's settings are not configured: a process that only builds spans)."""
    try:
        return "openinference" in audit_settings.SPAN_CONVENTIONS
    except ImproperlyConfigured:
        return True


def _cutter(max_length: int | None) -> Callable[[str], str]:
    if max_length is None:
        return str
    return functools.partial(_cut, max_length=max_length)


def _cut(text: str, max_length: int) -> str:
    if len(text) > max_length:
        return text[: max(0, max_length - 1)] + "…"
    return text


def encode(
    record: PredictionRecord,
    *,
    export_payloads: bool = True,
    max_length: int | None = None,
    openinference: bool | None = None,
) -> dict[str, AttributeValue]:
    """Span attributes for a redacted record.

    ``export_payloads=False`` leaves features, output, metadata, auth context and the subject
    reference out (and the OpenInference input, output, user and session). ``max_length``
    bounds each JSON attribute (the database row is always whole; the subject reference is
    never cut: a prefix of it would name nobody). ``openinference`` adds the OpenInference
    attributes (default: as ``ML_AUDIT['SPAN_CONVENTIONS']`` says); the ``ml_audit.*`` ones are
    the same either way.
    """
    if record.redaction is None:
        raise ValueError("only redacted records may become span attributes")
    if openinference is None:
        openinference = openinference_enabled()
    timestamp = record.timestamp
    if timestamp.tzinfo is not dt.UTC:  # astimezone(dt.UTC) returns a UTC datetime unchanged
        timestamp = timestamp.astimezone(dt.UTC)
    dumps = _dumps if max_length is None else functools.partial(_json, max_length=max_length)
    # Literal keys (the ATTR names, checked by a test): this runs once per prediction on the
    # request thread, and a dict display with constant keys is built in one step.
    attributes: dict[str, AttributeValue] = {
        "ml_audit.schema_version": SCHEMA_VERSION,
        "ml_audit.event_id": record._event_id_text,
        "ml_audit.prediction_id": record.prediction_id,
        # isoformat() writes the microseconds unless they are 0 (and is faster than asking).
        "ml_audit.timestamp": (
            timestamp.isoformat()
            if timestamp.microsecond
            else timestamp.isoformat(timespec="microseconds")
        ),
        "ml_audit.model.name": record.model_name,
        "ml_audit.model.version": record.model_version,
        "ml_audit.status": record.status,
        "ml_audit.redaction": dumps(record.redaction),
    }
    # Optional attributes, in the order of _OPTIONAL_RECORD_ATTRIBUTES and
    # _OPTIONAL_ACTOR_ATTRIBUTES, only when set (neither None nor ""). Unrolled (twice as fast
    # as a getattr loop): the text fields are str (or None), so truth is "set".
    if record.environment:
        attributes["ml_audit.environment"] = record.environment
    if record.decision_outcome:
        attributes["ml_audit.decision_outcome"] = record.decision_outcome
    if record.confidence is not None:
        attributes["ml_audit.confidence"] = record.confidence
    if record.latency_ms is not None:
        attributes["ml_audit.latency_ms"] = record.latency_ms
    if record.error_type:
        attributes["error.type"] = record.error_type
    if record.error_message:
        attributes["ml_audit.error.message"] = record.error_message
    if record.correlation_id:
        attributes["ml_audit.correlation_id"] = record.correlation_id
    actor = record.actor
    if actor is not None:
        if actor.actor_type:
            attributes["ml_audit.actor.type"] = actor.actor_type
        if actor.actor_id:
            attributes["ml_audit.actor.id"] = actor.actor_id
        if actor.tenant_id:
            attributes["ml_audit.actor.tenant_id"] = actor.tenant_id
        if actor.ip_address:
            attributes["client.address"] = actor.ip_address
        if actor.user_agent:
            attributes["user_agent.original"] = actor.user_agent
    if export_payloads:
        features = attributes["ml_audit.features"] = dumps(record.features)
        output = attributes["ml_audit.output"] = dumps(record.output)
        value = record.metadata
        # Usually empty: "{}" is what either encoder writes for it.
        empty = max_length is None and type(value) is dict and not value
        attributes["ml_audit.metadata"] = "{}" if empty else dumps(value)
        if actor is not None and actor.auth_context is not None:
            attributes["ml_audit.actor.auth_context"] = dumps(actor.auth_context)
        if record.subject_ref:
            attributes["ml_audit.subject.ref"] = record.subject_ref
    if not openinference:
        return attributes
    # OpenInference (ml_audit.otel.openinference says what and why). Literal keys again, the
    # package's names (checked by a test); the JSON strings above are reused, not rebuilt.
    attributes["openinference.span.kind"] = "CHAIN"
    if export_payloads:
        attributes["input.value"] = features
        attributes["input.mime_type"] = "application/json"
        if record.output is not None:
            attributes["output.value"] = output
            attributes["output.mime_type"] = "application/json"
        if value:  # the redacted metadata: a caller's own user and session ids
            redaction = record.redaction
            user_id = oi.caller_id(value, oi.USER_ID_KEY, max_length, redaction)
            if user_id is not None:
                attributes["user.id"] = user_id
            session_id = oi.caller_id(value, oi.SESSION_ID_KEY, max_length, redaction)
            if session_id is not None:
                attributes["session.id"] = session_id
    # oi.prediction_metadata, inline: one small dict, one dumps call.
    attributes["metadata"] = dumps(
        {
            "model": record.model_name,
            "version": record.model_version,
            "prediction_id": record.prediction_id,
            "decision": record.decision_outcome or None,
            "confidence": record.confidence,
        }
    )
    key = (record.model_name, record.decision_outcome, record.status)
    tags = oi.TAG_CACHE.get(key) or oi.prediction_tags(*key)
    if max_length is not None:
        tags = tuple(_cut(tag, max_length) for tag in tags)
    attributes["tag.tags"] = tags
    return attributes


def encode_explanation(
    *,
    prediction_id: str,
    method: str,
    revision: int,
    status: str,
    method_version: str = "",
    summary_text: str = "",
    payload: Any = None,
    export_payloads: bool = True,
    max_length: int | None = None,
    openinference: bool | None = None,
) -> dict[str, AttributeValue]:
    """Span attributes of an explanation of ``prediction_id``, from its *redacted* content.

    The summary text and the top attributions of ``payload`` (see
    :func:`ml_audit.otel.openinference.top_attributions`) are payload attributes: left out
    when ``export_payloads`` is off, cut to ``max_length`` otherwise.
    """
    if openinference is None:
        openinference = openinference_enabled()
    cut = _cutter(max_length)
    attributes: dict[str, AttributeValue] = {
        ATTR.PREDICTION_ID: prediction_id,
        ATTR.EXPLANATION_METHOD: method,
        ATTR.EXPLANATION_REVISION: revision,
        ATTR.EXPLANATION_STATUS: status,
    }
    if method_version:
        attributes[ATTR.EXPLANATION_METHOD_VERSION] = method_version
    summary = attributions = None
    if export_payloads:
        if summary_text:
            summary = attributes[ATTR.EXPLANATION_SUMMARY] = cut(summary_text)
        top = oi.top_attributions(payload)
        if top:
            attributions = attributes[ATTR.EXPLANATION_TOP_ATTRIBUTIONS] = cut(_dumps(top))
    if openinference:
        attributes.update(
            oi.explanation_attributes(
                dumps=_dumps,
                cut=cut,
                export_payloads=export_payloads,
                prediction_id=prediction_id,
                method=method,
                method_version=method_version,
                revision=revision,
                status=status,
                summary=summary,
                attributions_json=attributions,
            )
        )
    return attributes


def decode(
    attributes: Mapping[str, Any],
    *,
    trace_id: str = "",
    span_id: str = "",
    parent_span_id: str = "",
) -> PredictionRecord:
    """The record that :func:`encode` turned into ``attributes`` (ids from the span context).

    Raises ``ValueError`` when required attributes are missing (a count limit dropped them) or
    a payload was cut by ``max_length``.
    """

    def get(name: str, default: Any = None) -> Any:
        return attributes.get(name, default)

    def payload(name: str, default: Any) -> Any:
        text = attributes.get(name)
        if text is None:
            return default
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"attribute {name} is not whole JSON (cut by a limit?)") from exc

    missing = [
        name
        for name in (ATTR.EVENT_ID, ATTR.PREDICTION_ID, ATTR.TIMESTAMP, ATTR.MODEL_NAME)
        if name not in attributes
    ]
    if missing:
        raise ValueError(f"span lacks ml_audit attributes: {', '.join(missing)}")
    if get(ATTR.SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ValueError(f"unsupported ml_audit schema version {get(ATTR.SCHEMA_VERSION)!r}")
    actor = None
    if get(ATTR.ACTOR_TYPE) is not None:
        actor = ActorPayload(
            actor_type=get(ATTR.ACTOR_TYPE),
            actor_id=get(ATTR.ACTOR_ID),
            tenant_id=get(ATTR.TENANT_ID),
            ip_address=get(ATTR.CLIENT_ADDRESS),
            user_agent=get(ATTR.USER_AGENT),
            auth_context=payload(ATTR.AUTH_CONTEXT, None),
        )
    confidence = get(ATTR.CONFIDENCE)
    latency = get(ATTR.LATENCY_MS)
    return PredictionRecord(
        event_id=uuid.UUID(get(ATTR.EVENT_ID)),
        prediction_id=get(ATTR.PREDICTION_ID),
        timestamp=dt.datetime.fromisoformat(get(ATTR.TIMESTAMP)).astimezone(dt.UTC),
        model_name=get(ATTR.MODEL_NAME),
        model_version=get(ATTR.MODEL_VERSION),
        environment=get(ATTR.ENVIRONMENT, ""),
        actor=actor,
        features=payload(ATTR.FEATURES, {}),
        output=payload(ATTR.OUTPUT, None),
        confidence=None if confidence is None else float(confidence),
        decision_outcome=get(ATTR.DECISION_OUTCOME, ""),
        status=get(ATTR.STATUS, "success"),
        error_type=get(ATTR.ERROR_TYPE, ""),
        error_message=get(ATTR.ERROR_MESSAGE, ""),
        latency_ms=None if latency is None else float(latency),
        metadata=payload(ATTR.METADATA, {}),
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        correlation_id=get(ATTR.CORRELATION_ID, ""),
        redaction=payload(ATTR.REDACTION, None),
        subject_ref=get(ATTR.SUBJECT_REF, ""),
    )


def decode_span(span: Any) -> PredictionRecord:
    """:func:`decode` for a finished SDK span (``ReadableSpan``)."""
    context = span.context
    parent = span.parent
    return decode(
        span.attributes or {},
        trace_id=format_trace_id(context.trace_id),
        span_id=format_span_id(context.span_id),
        parent_span_id=format_span_id(parent.span_id) if parent is not None else "",
    )
