"""With opentelemetry-instrumentation-django, a prediction is a child of the request span."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ml_audit.models import PredictionEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def instrumented() -> Iterator[None]:
    DjangoInstrumentor().instrument()
    yield
    DjangoInstrumentor().uninstrument()


def test_prediction_row_shares_the_request_trace(
    instrumented: None, exporter: InMemorySpanExporter, django_user_model: object
) -> None:
    user = django_user_model.objects.create_user("ana", password="pw")  # type: ignore[attr-defined]
    client = Client()
    client.force_login(user)
    response = client.get(
        "/predict/?amount=12", HTTP_USER_AGENT="pytest", REMOTE_ADDR="198.51.100.7"
    )
    assert response.status_code == 200
    row = PredictionEvent.objects.get(prediction_id=response.json()["prediction_id"])
    (server,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert row.trace_id == f"{server.context.trace_id:032x}"
    assert row.parent_span_id == f"{server.context.span_id:016x}"
    assert row.actor is not None
    assert row.actor.actor_id == str(user.pk)
    assert row.client_ip == "198.51.100.7"
    assert row.user_agent == "pytest"


def test_predictions_outside_requests_are_root_spans(exporter: InMemorySpanExporter) -> None:
    from ml_audit.services import record_prediction_event

    event = record_prediction_event("batch_scoring", "1", {"x": 1})
    assert event.parent_span_id == ""
    assert len(event.trace_id) == 32
