"""Each review as an OpenTelemetry span ``ml_audit.review <action>``, so that an APM shows it
beside the prediction it reviews.

A review comes minutes to weeks after its prediction, usually in another request, so it is not
made a child of the prediction's span (that would stretch one trace over weeks and put work of
one request into another's waterfall). Instead:

- its parent is the current span when there is one (the admin or API request that records
  it, under the project's Django instrumentation), else it starts a trace of its own;
- it carries a span **link** to the prediction's span context (the ``trace_id`` and
  ``span_id`` stored on the :class:`~ml_audit.models.PredictionEvent`), which is how
  OpenTelemetry relates causally connected work across traces; a prediction recorded without
  span ids gets no link, and its ``ml_audit.prediction_id`` attribute still names it.

The span comes from the package's tracer (:func:`ml_audit.otel.setup.get_pipeline`), whose
sampler never drops: what the project's sampler would drop is recorded but not exported. The
audit span processor ignores it (it persists prediction spans only); the review's row is
written by :func:`~ml_audit.oversight.reviews.record_review` inside the span, with the span's
ids.

Attributes (see ``docs/SPAN_ATTRIBUTES.md``): the action, the final outcome of an override,
the reviewer's type and id (a username or an actor id, as the prediction span exports its
actor's id), the review's UUID, the prediction's ``prediction_id`` and UUID, which fields the
redaction changed, and the redacted reason when ``EXPORT_PAYLOADS`` is on. Never the comment,
not even redacted: free text is where a value the detectors miss would hide.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from ml_audit.conf import audit_settings
from ml_audit.otel import openinference as oi
from ml_audit.otel.conventions import ATTR, _cutter, _dumps, format_span_id, format_trace_id
from ml_audit.otel.setup import get_pipeline

__all__ = [
    "REVIEW_ATTR",
    "REVIEW_SPAN_PREFIX",
    "prediction_link",
    "review_attributes",
    "review_span",
]

REVIEW_SPAN_PREFIX = "ml_audit.review"


class REVIEW_ATTR:
    """Attribute names of a review span (besides ``ml_audit.prediction_id``)."""

    ID = "ml_audit.review.id"
    ACTION = "ml_audit.review.action"
    FINAL_OUTCOME = "ml_audit.review.final_outcome"
    REVIEWER_TYPE = "ml_audit.review.reviewer.type"
    REVIEWER_ID = "ml_audit.review.reviewer.id"
    #: The redacted reason, cut to EXPORT_MAX_ATTRIBUTE_LENGTH; only with EXPORT_PAYLOADS.
    REASON = "ml_audit.review.reason"
    #: Which of reason and comment the value detectors changed (never what they found).
    REDACTED = "ml_audit.review.redacted"
    #: The reviewed prediction's UUID primary key.
    PREDICTION_EVENT_ID = "ml_audit.event_id"


def prediction_link(trace_id: str, span_id: str) -> Link | None:
    """A link to a prediction's span from its stored hex ids; ``None`` without valid ids."""
    if not (trace_id and span_id):
        return None
    try:
        context = SpanContext(
            trace_id=int(trace_id, 16),
            span_id=int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    except ValueError:
        return None
    return Link(context) if context.is_valid else None


def review_attributes(review: Any, prediction: Any) -> dict[str, AttributeValue]:
    """The span attributes of ``review`` (a :class:`~ml_audit.decision_models.Review`, already
    redacted) of ``prediction``: the ``ml_audit.*`` ones, and the OpenInference view (kind
    ``EVALUATOR``: a review judges the model's output) when ``SPAN_CONVENTIONS`` names it."""
    attributes: dict[str, AttributeValue] = {
        REVIEW_ATTR.ID: str(review.pk),
        REVIEW_ATTR.ACTION: review.action,
        REVIEW_ATTR.REVIEWER_TYPE: review.reviewer_type,
        REVIEW_ATTR.REVIEWER_ID: review.reviewer_id,
        ATTR.PREDICTION_ID: prediction.prediction_id,
        REVIEW_ATTR.PREDICTION_EVENT_ID: str(prediction.pk),
    }
    if review.final_outcome:
        attributes[REVIEW_ATTR.FINAL_OUTCOME] = review.final_outcome
    paths = (review.redaction or {}).get("paths") or {}
    if paths:
        attributes[REVIEW_ATTR.REDACTED] = tuple(sorted(paths))
    export_payloads = audit_settings.EXPORT_PAYLOADS
    cut = _cutter(audit_settings.EXPORT_MAX_ATTRIBUTE_LENGTH)
    if review.reason and export_payloads:
        attributes[REVIEW_ATTR.REASON] = cut(review.reason)
    if "openinference" in audit_settings.SPAN_CONVENTIONS:
        attributes[oi.SPAN_KIND] = oi.REVIEW_KIND
        if export_payloads:
            attributes[oi.INPUT_VALUE] = cut(_dumps({"prediction_id": prediction.prediction_id}))
            attributes[oi.INPUT_MIME_TYPE] = oi.JSON
            verdict = {"action": review.action, "final_outcome": review.final_outcome or None}
            attributes[oi.OUTPUT_VALUE] = cut(_dumps(verdict))
            attributes[oi.OUTPUT_MIME_TYPE] = oi.JSON
        metadata = {
            "prediction_id": prediction.prediction_id,
            "action": review.action,
            "final_outcome": review.final_outcome or None,
            "reviewer_type": review.reviewer_type,
        }
        attributes[oi.METADATA] = cut(_dumps(metadata))
        tags = ["ml_audit.review", f"action:{review.action}"]
        if review.final_outcome:
            tags.append(f"outcome:{review.final_outcome}")
        attributes[oi.TAGS] = tuple(cut(tag) for tag in tags)
    return attributes


def _nanoseconds(when: Any) -> int:
    return int(when.timestamp() * 1_000_000) * 1000


@contextlib.contextmanager
def review_span(
    review: Any, prediction: Any, *, instant: bool = False
) -> Iterator[tuple[str, str]]:
    """The span of ``review``, started at its ``created_at``; yields its ``(trace_id, span_id)``
    in hex and ends when the block does. ``instant``: a review recorded after the fact (an
    explicit time) is a span without duration at that time, not one lasting until now.

    An exception in the block (the row could not be written) marks the span ERROR with
    ``error.type`` only, never the message (a database error may quote the row), and is
    re-raised.
    """
    link = prediction_link(prediction.trace_id, prediction.span_id)
    start = _nanoseconds(review.created_at)
    span = get_pipeline().tracer.start_span(
        f"{REVIEW_SPAN_PREFIX} {review.action}",
        kind=SpanKind.INTERNAL,
        links=[link] if link is not None else None,
        attributes=review_attributes(review, prediction),
        start_time=start,
    )
    context = span.get_span_context()
    try:
        with trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield format_trace_id(context.trace_id), format_span_id(context.span_id)
    except BaseException as exc:
        span.set_attribute(ATTR.ERROR_TYPE, type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
        span.end()
        raise
    span.end(end_time=start if instant else None)
