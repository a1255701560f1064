"""Predictions as spans: the context manager, the decorator, and the seed facade's span.

Every prediction recorded by ml_audit goes the same way::

    record (validated) -> redacted -> span ml_audit.prediction <model> -> processor -> writer

>>> with prediction_span(model_name="fraud", model_version="3", features=x, actor=actor) as p:
...     score = model.predict_proba(x)[0, 1]
...     p.set_output({"score": score}, confidence=score, decision_outcome="flagged")

The span is a child of the current span (the Django request span under
opentelemetry-instrumentation-django), or a root span when there is none. An exception inside
the block marks the prediction ``failed`` (error type and redacted message), marks the span
ERROR with an ``exception`` event, and is re-raised. Latency is the span's duration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import inspect
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from ml_audit.conf import WRITE_MODES, audit_settings
from ml_audit.exceptions import InvalidRecord
from ml_audit.otel import conventions, pending
from ml_audit.otel.setup import get_pipeline
from ml_audit.otel.span_attributes import set_span_attributes
from ml_audit.records import (
    MAX_ERROR_MESSAGE,
    MAX_ERROR_TYPE,
    ActorPayload,
    PredictionRecord,
    PreparedFeatures,
    _replace,
    create_draft,
)
from ml_audit.redaction import RedactionPolicy

logger = logging.getLogger("ml_audit.otel")

__all__ = [
    "PredictionSpan",
    "audit_prediction",
    "emit_explanation_span",
    "prediction_span",
    "record_through_span",
]

F = TypeVar("F", bound=Callable[..., Any])


class AuditWriteError(RuntimeError):
    """The audit span processor did not persist a synchronous prediction."""


@dataclasses.dataclass
class PredictionSpan:
    """The handle ``prediction_span`` yields: set the outcome before the block ends."""

    span: Span
    record: PredictionRecord
    _outcome: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The saved PredictionEvent once a synchronous prediction has ended.
    event: Any = None

    @property
    def prediction_id(self) -> str:
        return self.record.prediction_id

    @property
    def trace_id(self) -> str:
        return self.record.trace_id

    def set_output(
        self,
        output: Any,
        *,
        confidence: float | None = None,
        decision_outcome: str | None = None,
        status: str = "success",
    ) -> None:
        """Record what the model answered (validated when the block ends)."""
        self._outcome.update(
            output=output, confidence=confidence, decision_outcome=decision_outcome, status=status
        )

    def add_metadata(self, **metadata: Any) -> None:
        """Extra JSON metadata for this prediction (merged over the initial metadata)."""
        self._outcome.setdefault("metadata", {}).update(metadata)


def _parent_context(trace_id: str) -> otel_context.Context | None:
    """The context to start a prediction span in; a W3C ``trace_id`` argument wins."""
    if not trace_id:
        return None
    current = trace.get_current_span().get_span_context()
    if current.is_valid and conventions.format_trace_id(current.trace_id) == trace_id:
        return None
    # The caller named a trace that is not the current one: continue it as a remote parent.
    # The parent span id is synthetic, as the seed API carries none.
    remote = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=random.getrandbits(64) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))


def _hex_id(value: int, size: int) -> str:
    """``conventions.format_trace_id`` (size 16) / ``format_span_id`` (size 8), faster."""
    if not value:
        return ""
    try:
        return value.to_bytes(size, "big").hex()  # zero-padded lower-case hex, as f"{:032x}"
    except OverflowError:  # not a W3C id: as the f-string writes it
        return f"{value:0{2 * size}x}"


def _start(record: PredictionRecord, *, timestamp_from_span: bool) -> tuple[Span, PredictionRecord]:
    trace_id = record.trace_id
    span = get_pipeline().tracer.start_span(
        conventions.prediction_span_name(record.model_name),
        context=_parent_context(trace_id) if trace_id else None,
        kind=SpanKind.INTERNAL,
    )
    ctx = span.get_span_context()
    parent = getattr(span, "parent", None)
    changes: dict[str, Any] = {
        "trace_id": _hex_id(ctx.trace_id, 16),
        "span_id": _hex_id(ctx.span_id, 8),
        "parent_span_id": _hex_id(parent.span_id, 8) if parent else "",
    }
    if timestamp_from_span:
        started = _timestamp_of(span)
        if started is not None:
            changes["timestamp"] = started
    return span, _replace(record, changes)


def _finish(
    span: Span,
    record: PredictionRecord,
    *,
    sync: bool,
    latency_from_span: bool,
    using: str | None = None,
    prepared: PreparedFeatures | None = None,
) -> Any:
    """Redact, describe the span, hand the record over and end the span.

    ``prepared``: the features already redacted when the record was created (used only if the
    policy and the features are still the same objects, see ``PreparedFeatures``).
    """
    redacted = record._redact(
        audit_settings.redaction_policy, audit_settings.REDACT_PAYLOADS, prepared
    )
    set_span_attributes(
        span,
        conventions.encode(
            redacted,
            export_payloads=audit_settings.EXPORT_PAYLOADS,
            max_length=audit_settings.EXPORT_MAX_ATTRIBUTE_LENGTH,
            openinference="openinference" in audit_settings.SPAN_CONVENTIONS,
        ),
    )
    if redacted.status == "failed":
        span.set_status(Status(StatusCode.ERROR, redacted.error_type or None))
        # Not span.record_exception(): its message and stack trace are not redacted.
        span.add_event(
            "exception",
            {
                "exception.type": redacted.error_type,
                "exception.message": redacted.error_message,
            },
        )
    ctx = span.get_span_context()
    handed = pending.PendingWrite(redacted, sync, latency_from_span, using)
    pending.hand_over(ctx.trace_id, ctx.span_id, handed)
    span.end()
    if not sync:
        return None
    if not handed.done.is_set():
        pending.take(ctx.trace_id, ctx.span_id)
        raise AuditWriteError(
            "the ml_audit span processor did not receive the prediction span; "
            "is it attached to the tracer provider?"
        )
    if handed.error is not None:
        raise handed.error
    return handed.event


def record_through_span(record: PredictionRecord, *, using: str | None = None) -> Any:
    """Persist a validated, unredacted record through a span, synchronously; return the row.

    The seed facade ``record_prediction_event`` uses this: same span as the helpers.
    """
    span, record = _start(record, timestamp_from_span=False)
    return _finish(span, record, sync=True, latency_from_span=False, using=using)


def _timestamp_of(span: Span) -> dt.datetime | None:
    start = getattr(span, "start_time", None)
    if start is None:
        return None
    return dt.datetime.fromtimestamp(start / 1e9, dt.UTC)


class prediction_span:
    """Record the prediction made inside the block (see the module docstring).

    Use it as ``with prediction_span(...) as p`` or, in async code, ``async with``. Inputs are
    validated on entry (an invalid call raises ``InvalidRecord`` before the model runs).
    ``mode`` is ``"sync"`` (the row is written before the block exits: ``p.event``) or
    ``"journal"`` / ``"batch"`` (queued; the processor's ``ML_AUDIT['WRITE_MODE']`` decides
    which of the two applies); default ``ML_AUDIT['WRITE_MODE']``. Under ``async with`` a
    sync-mode write runs in a thread (``asgiref.sync_to_async``), as Django's ORM requires.
    ``describe_error`` turns an exception raised in the block into the stored (then redacted)
    error message; the default is ``str(exc)``; the error type is always the exception's class.
    ``subject`` names whom the prediction is about (see :mod:`ml_audit.subjects`): only its
    pseudonymous reference is recorded, looked up (or created) here, before the block runs;
    :class:`~ml_audit.subjects.SubjectUnavailable` when that needs the database and it cannot
    be reached.
    """

    def __init__(
        self,
        *,
        model_name: str,
        model_version: str,
        features: Mapping[str, Any],
        actor: ActorPayload | Mapping[str, Any] | None = None,
        subject: str | int | None = None,
        environment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        prediction_id: str | None = None,
        mode: str | None = None,
        describe_error: Callable[[BaseException], str] | None = None,
    ) -> None:
        self.mode = mode or audit_settings.WRITE_MODE
        self.describe_error = describe_error
        if self.mode not in WRITE_MODES:
            raise ValueError(f"mode must be one of {', '.join(WRITE_MODES)}, not {self.mode!r}")
        try:
            policy: RedactionPolicy | None = audit_settings.redaction_policy
        except Exception:  # invalid settings: raised where they always were, when redacting
            policy = None
        # Validates like PredictionRecord.create; flat features are redacted in the same walk.
        self.draft, self._prepared = create_draft(
            PredictionRecord,
            policy,
            model_name=model_name,
            model_version=model_version,
            features=features,
            actor=actor,
            environment=environment,
            metadata=metadata,
            prediction_id=prediction_id,
            default_environment=audit_settings.ENVIRONMENT,
            max_payload_bytes=audit_settings.MAX_PAYLOAD_BYTES,
        )
        # The subject is validated here; its key is read (or created) here too, unless an
        # event loop runs in this thread: then ``async with`` reads it from a thread
        # (``__aenter__``), as Django's ORM requires.
        self._subject: Any = None
        if subject is not None:
            from ml_audit.subjects.keys import Subject

            self._subject = Subject(subject, self.draft.tenant_id)
            if not _in_event_loop():
                self._name_subject()
        self._token: object | None = None
        self._handle: PredictionSpan | None = None

    def _name_subject(self) -> None:
        """Put the subject's reference on the draft (its key read or created)."""
        if self._subject is None:
            return
        from ml_audit.subjects.keys import reference

        ref = reference(self._subject, create=True)
        self.draft = _replace(self.draft, {"subject_ref": ref})
        self._subject = None

    def __enter__(self) -> PredictionSpan:
        self._name_subject()  # only still pending when built inside an event loop
        span, draft = _start(self.draft, timestamp_from_span=True)
        self.draft = draft
        self._handle = PredictionSpan(span, draft)
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return self._handle

    def _detach(self) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None

    def _complete(self, exc: BaseException | None) -> None:
        """End the span with the outcome (or the failure) and persist it."""
        handle = self._handle
        assert handle is not None
        sync = self.mode == "sync"
        limit = audit_settings.MAX_PAYLOAD_BYTES
        if exc is None:
            try:
                record = self.draft.with_outcome(**handle._outcome, max_payload_bytes=limit)
            except InvalidRecord as invalid:
                # The model ran but its outcome cannot be stored as given: the audit trail
                # still gets an entry (failed, saying why) before the error reaches the caller.
                self._complete(invalid)
                raise
            handle.record = record
            handle.event = _finish(
                handle.span, record, sync=sync, latency_from_span=True, prepared=self._prepared
            )
            return
        metadata = {k: v for k, v in handle._outcome.items() if k == "metadata"}
        error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"[:MAX_ERROR_TYPE]
        message = _describe(self.describe_error, exc)
        try:
            failed = self.draft.with_outcome(
                status="failed",
                error_type=error_type,
                error_message=message,
                max_payload_bytes=limit,
                **metadata,
            )
        except InvalidRecord as invalid:
            # The failure itself must be recorded, and the caller's exception must reach the
            # caller: without the metadata (or the message) that cannot be stored.
            logger.warning(
                "ml_audit: the failed prediction %s is recorded without %s: %s",
                self.draft.prediction_id,
                invalid.field,
                invalid,
            )
            failed = self.draft.with_outcome(status="failed", error_type=error_type)
        _finish(handle.span, failed, sync=sync, latency_from_span=True, prepared=self._prepared)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._detach()
        self._complete(exc)

    async def __aenter__(self) -> PredictionSpan:
        if self._subject is not None:
            await sync_to_async(self._name_subject)()
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._detach()
        if self.mode == "sync":
            await sync_to_async(self._complete)(exc)
        else:
            self._complete(exc)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _describe(describe_error: Callable[[BaseException], Any] | None, exc: BaseException) -> str:
    """What is stored of an exception's message: ``describe_error(exc)`` (default ``str``), cut
    to the column's limit and made storable; "" when that raises or returns no string (logged:
    a broken describe_error never replaces the caller's exception)."""
    try:
        text = (describe_error or str)(exc)
    except Exception as broken:
        logger.warning(
            "ml_audit: describe_error raised %s for a %s; its message is not stored",
            type(broken).__name__,
            type(exc).__name__,
        )
        return ""
    if not isinstance(text, str):
        if describe_error is not None:
            logger.warning(
                "ml_audit: describe_error returned %s, not a string; the message is not stored",
                type(text).__name__,
            )
        return ""
    text = text[:MAX_ERROR_MESSAGE].replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


def _argument(spec: str | Callable[..., Any] | None, bound: inspect.BoundArguments) -> Any:
    if spec is None:
        return None
    if callable(spec):
        return spec(*bound.args, **bound.kwargs)
    return bound.arguments.get(spec)


def _from_result(spec: str | Callable[[Any], Any] | None, result: Any) -> Any:
    if spec is None:
        return None
    if callable(spec):
        return spec(result)
    return result.get(spec) if isinstance(result, Mapping) else getattr(result, spec, None)


def audit_prediction(
    *,
    model_name: str,
    model_version: str,
    features: str | Callable[..., Mapping[str, Any]] = "features",
    actor: str | Callable[..., Any] | None = None,
    subject: str | Callable[..., Any] | None = None,
    confidence: str | Callable[[Any], Any] | None = None,
    decision_outcome: str | Callable[[Any], Any] | None = None,
    environment: str | None = None,
    mode: str | None = None,
) -> Callable[[F], F]:
    """Decorator: every call of the function (sync or ``async``) is a recorded prediction.

    ``features``, ``actor`` and ``subject`` (whom the prediction is about: its identifier, see
    :mod:`ml_audit.subjects`) name a parameter of the function (or are callables taking the
    same arguments); the return value is the output; ``confidence`` and ``decision_outcome``
    name a key (or attribute) of the return value, or are callables of it.
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func)

        def opened(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return prediction_span(
                model_name=model_name,
                model_version=model_version,
                features=_argument(features, bound),
                actor=_argument(actor, bound),
                subject=_argument(subject, bound),
                environment=environment,
                mode=mode,
            )

        def outcome(p: PredictionSpan, result: Any) -> None:
            p.set_output(
                result,
                confidence=_from_result(confidence, result),
                decision_outcome=_from_result(decision_outcome, result),
            )

        if asyncio.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with opened(args, kwargs) as p:
                    result = await func(*args, **kwargs)
                    outcome(p, result)
                return result

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with opened(args, kwargs) as p:
                result = func(*args, **kwargs)
                outcome(p, result)
            return result

        return cast(F, wrapper)

    return decorate


def _explanation_parent(
    trace_id: str, span_id: str
) -> tuple[otel_context.Context | None, list[Link]]:
    """Where an explanation span goes: (context to start it in, its links).

    - The current span is in the prediction's trace (the prediction span itself, or the request
      that made the prediction, explained in the same request): a child of the prediction's
      span, with the current span's sampling flags.
    - There is no current span (a job, a shell): a child of the prediction's span too, in the
      prediction's trace; a child may start after its parent ended, which is valid
      OpenTelemetry, and APMs show it under its prediction.
    - The current span is in another trace (explained later, in another request): a span of the
      current trace, linked to the prediction's span (the prediction id is an attribute).
    - The prediction has no span ids (recorded without a span context): as the current span
      says, with no link; the prediction id still names it.
    """
    if not (trace_id and span_id):
        return None, []
    try:
        target_trace, target_span = int(trace_id, 16), int(span_id, 16)
    except ValueError:
        return None, []
    current = trace.get_current_span().get_span_context()
    if current.is_valid and current.trace_id != target_trace:
        link = Link(
            SpanContext(
                trace_id=target_trace,
                span_id=target_span,
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
        return None, [link]
    if current.is_valid and current.span_id == target_span:
        return None, []  # the prediction span is the current span: its child as it is
    parent = SpanContext(
        trace_id=target_trace,
        span_id=target_span,
        is_remote=True,
        trace_flags=current.trace_flags if current.is_valid else TraceFlags(TraceFlags.SAMPLED),
        trace_state=current.trace_state if current.is_valid else None,
    )
    return trace.set_span_in_context(NonRecordingSpan(parent)), []


def emit_explanation_span(
    *,
    prediction_id: str,
    trace_id: str,
    span_id: str,
    method: str,
    revision: int,
    status: str,
    method_version: str = "",
    summary_text: str = "",
    payload: Any = None,
) -> None:
    """A span ``ml_audit.explanation <method>`` for an explanation of a recorded prediction.

    It carries the *redacted* explanation's content (summary text, top attributions, method and
    version; see :func:`ml_audit.otel.conventions.encode_explanation`), within
    ``EXPORT_PAYLOADS`` and ``EXPORT_MAX_ATTRIBUTE_LENGTH``, and sits where an APM shows it
    with its prediction: a child of the prediction's span in the prediction's trace, or, when
    attached from another trace, linked to it (see :func:`_explanation_parent`).
    """
    context, links = _explanation_parent(trace_id, span_id)
    attributes = conventions.encode_explanation(
        prediction_id=prediction_id,
        method=method,
        revision=revision,
        status=status,
        method_version=method_version,
        summary_text=summary_text,
        payload=payload,
        export_payloads=audit_settings.EXPORT_PAYLOADS,
        max_length=audit_settings.EXPORT_MAX_ATTRIBUTE_LENGTH,
        openinference="openinference" in audit_settings.SPAN_CONVENTIONS,
    )
    tracer = get_pipeline().tracer
    span = tracer.start_span(
        f"{conventions.EXPLANATION_SPAN_PREFIX} {method}",
        context=context,
        kind=SpanKind.INTERNAL,
        links=links,
        attributes=attributes,
    )
    span.end()
