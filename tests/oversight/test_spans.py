"""Each review is a span ``ml_audit.review <action>``: parented by the current span, linked to
the prediction's span, ids on the row, no comment exported."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import DatabaseError
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ml_audit.decision_models import Review
from ml_audit.models import PredictionEvent
from ml_audit.otel.conventions import ATTR
from ml_audit.oversight import record_review
from ml_audit.oversight.spans import REVIEW_ATTR, prediction_link
from tests.oversight.conftest import T0, TRACE, make_user

pytestmark = pytest.mark.django_db

OFFICER = {"actor_type": "service", "actor_id": "loan-desk"}


def review_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("ml_audit.review")]


def test_a_review_without_a_current_span_starts_a_trace_linked_to_the_prediction(
    prediction: PredictionEvent, exporter: InMemorySpanExporter
) -> None:
    review = record_review(
        prediction, reviewer=make_user("alice"), action="override", final_outcome="approve"
    )
    (span,) = review_spans(exporter)
    assert span.name == "ml_audit.review override"
    assert span.parent is None
    assert (review.trace_id, review.span_id) == (
        f"{span.context.trace_id:032x}",
        f"{span.context.span_id:016x}",
    )
    assert review.trace_id != prediction.trace_id == TRACE
    (link,) = span.links
    assert f"{link.context.trace_id:032x}" == prediction.trace_id
    assert f"{link.context.span_id:016x}" == prediction.span_id
    attributes = dict(span.attributes or {})
    assert attributes[REVIEW_ATTR.ACTION] == "override"
    assert attributes[REVIEW_ATTR.FINAL_OUTCOME] == "approve"
    assert attributes[REVIEW_ATTR.REVIEWER_TYPE] == "user"
    assert attributes[REVIEW_ATTR.REVIEWER_ID] == "alice"
    assert attributes[REVIEW_ATTR.ID] == str(review.pk)
    assert attributes[ATTR.PREDICTION_ID] == "loan-1"
    assert attributes[REVIEW_ATTR.PREDICTION_EVENT_ID] == str(prediction.pk)
    assert span.status.status_code is StatusCode.UNSET
    # The row is what the span says: read back, same ids.
    stored = Review.objects.get()
    assert (stored.trace_id, stored.span_id) == (review.trace_id, review.span_id)


def test_a_review_in_a_request_is_a_child_of_the_request_span(
    prediction: PredictionEvent, exporter: InMemorySpanExporter
) -> None:
    with trace.get_tracer("app").start_as_current_span("POST /reviews") as request_span:
        review = record_review(prediction, reviewer=OFFICER, action="confirm")
    (span,) = review_spans(exporter)
    request_context = request_span.get_span_context()
    assert span.parent is not None
    assert span.parent.span_id == request_context.span_id
    assert span.context.trace_id == request_context.trace_id
    assert review.trace_id == f"{request_context.trace_id:032x}"
    (link,) = span.links
    assert f"{link.context.span_id:016x}" == prediction.span_id
    assert REVIEW_ATTR.FINAL_OUTCOME not in (span.attributes or {})


def test_a_prediction_without_span_ids_gets_no_link(
    prediction: PredictionEvent, exporter: InMemorySpanExporter
) -> None:
    prediction.trace_id = prediction.span_id = ""  # as a row recorded without a span context
    record_review(prediction, reviewer=OFFICER, action="escalate")
    (span,) = review_spans(exporter)
    assert not span.links
    assert (span.attributes or {})[ATTR.PREDICTION_ID] == "loan-1"
    assert prediction_link("", "") is None
    assert prediction_link("zz" * 16, "ab" * 8) is None
    assert prediction_link("0" * 32, "0" * 16) is None  # all-zero ids are invalid
    assert prediction_link(TRACE, "ab" * 8) is not None


def test_the_comment_is_never_exported_and_the_reason_only_redacted(
    prediction: PredictionEvent, exporter: InMemorySpanExporter
) -> None:
    record_review(
        prediction,
        reviewer=OFFICER,
        action="contest_received",
        reason="phoned by jane@example.com",
        comment="she says her income is 90k, see ticket 4411",
    )
    (span,) = review_spans(exporter)
    attributes = dict(span.attributes or {})
    exported = json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()}
    )
    assert "jane@example.com" not in exported
    assert "90k" not in exported
    assert "4411" not in exported
    assert attributes[REVIEW_ATTR.REASON] == "phoned by *****"
    assert list(attributes[REVIEW_ATTR.REDACTED]) == ["reason"]  # type: ignore[arg-type]


def test_payload_export_off_leaves_the_reason_out(
    prediction: PredictionEvent, exporter: InMemorySpanExporter, settings: Any
) -> None:
    settings.ML_AUDIT = {"EXPORT_PAYLOADS": False}
    record_review(prediction, reviewer=OFFICER, action="confirm", reason="fine")
    (span,) = review_spans(exporter)
    attributes = dict(span.attributes or {})
    assert REVIEW_ATTR.REASON not in attributes
    assert "input.value" not in attributes
    assert "output.value" not in attributes
    assert attributes[REVIEW_ATTR.ACTION] == "confirm"


def test_the_reason_is_cut_to_the_export_limit(
    prediction: PredictionEvent, exporter: InMemorySpanExporter, settings: Any
) -> None:
    settings.ML_AUDIT = {"EXPORT_MAX_ATTRIBUTE_LENGTH": 16}
    record_review(prediction, reviewer=OFFICER, action="confirm", reason="r" * 100)
    (span,) = review_spans(exporter)
    reason = (span.attributes or {})[REVIEW_ATTR.REASON]
    assert reason == "r" * 15 + "…"
    assert Review.objects.get().reason == "r" * 100  # the row keeps all of it


def test_openinference_sees_an_evaluator(
    prediction: PredictionEvent, exporter: InMemorySpanExporter, settings: Any
) -> None:
    record_review(prediction, reviewer=OFFICER, action="override", final_outcome="approve")
    (span,) = review_spans(exporter)
    attributes = dict(span.attributes or {})
    assert attributes["openinference.span.kind"] == "EVALUATOR"
    assert list(attributes["tag.tags"]) == [  # type: ignore[arg-type]
        "ml_audit.review",
        "action:override",
        "outcome:approve",
    ]
    assert json.loads(str(attributes["metadata"])) == {
        "prediction_id": "loan-1",
        "action": "override",
        "final_outcome": "approve",
        "reviewer_type": "service",
    }
    assert json.loads(str(attributes["output.value"])) == {
        "action": "override",
        "final_outcome": "approve",
    }
    exporter.clear()
    settings.ML_AUDIT = {"SPAN_CONVENTIONS": ("ml_audit",)}
    record_review(prediction, reviewer=OFFICER, action="confirm")
    (span,) = review_spans(exporter)
    assert not [name for name in span.attributes or {} if not name.startswith("ml_audit.")]


def test_a_review_dated_after_the_fact_is_an_instant_at_that_time(
    prediction: PredictionEvent, exporter: InMemorySpanExporter
) -> None:
    import datetime as dt

    when = T0 + dt.timedelta(days=2, microseconds=123456)
    record_review(prediction, reviewer=OFFICER, action="confirm", at=when)
    (span,) = review_spans(exporter)
    assert span.start_time == span.end_time == int(when.timestamp() * 1_000_000) * 1000


def test_a_failed_write_marks_the_span_without_its_message(
    prediction: PredictionEvent, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: Review, *args: Any, **kwargs: Any) -> None:
        raise DatabaseError("value jane@example.com violates something")

    monkeypatch.setattr(Review, "save", fail)
    with pytest.raises(DatabaseError):
        record_review(prediction, reviewer=OFFICER, action="confirm")
    (span,) = review_spans(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})[ATTR.ERROR_TYPE] == "DatabaseError"
    assert "jane" not in str(span.status.description)
    assert not span.events
    monkeypatch.undo()
    assert not Review.objects.exists()


def test_review_spans_are_not_persisted_as_predictions(
    prediction: PredictionEvent, exporter: InMemorySpanExporter
) -> None:
    record_review(prediction, reviewer=OFFICER, action="confirm")
    assert review_spans(exporter)
    assert list(PredictionEvent.objects.values_list("prediction_id", flat=True)) == ["loan-1"]
