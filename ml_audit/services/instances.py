"""Unsaved ``PredictionEvent`` / ``Explanation`` instances, recorded through the one path.

django-ml-audit 0.2.0 let code write audit rows with the ORM
(``PredictionEvent.objects.create(...)``, ``Explanation(...).save()``). Those calls keep
working, but such a row is not inserted as given: ``save()`` of a new instance hands it here,
it is recorded like any other prediction or explanation (validated, redacted, hashed, a span,
the one writer) and the stored row's values are copied back onto the instance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_audit.conf import audit_settings
from ml_audit.exceptions import InvalidRecord
from ml_audit.otel.spans import record_through_span
from ml_audit.records import ActorPayload, PredictionRecord
from ml_audit.services.explanations import attach_explanation

if TYPE_CHECKING:
    from django.db.models import Model

    from ml_audit.models import Explanation, PredictionEvent

__all__ = ["record_explanation_instance", "record_prediction_instance"]


def _copy_row(target: Model, row: Model) -> None:
    for field in row._meta.concrete_fields:
        setattr(target, field.attname, getattr(row, field.attname))
    target._state.adding = False
    target._state.db = row._state.db


def record_prediction_instance(event: PredictionEvent, using: str | None) -> None:
    """Record an unsaved ``PredictionEvent`` as :func:`record_prediction_event` records a call."""
    if event.model_id is None:
        raise InvalidRecord("model", "a PredictionEvent needs its ModelVersion")
    model = event.model
    actor = None
    if event.actor_id is not None:
        row = event.actor
        assert row is not None
        actor = ActorPayload(
            actor_type=row.actor_type,
            actor_id=row.actor_id,
            tenant_id=row.tenant_id or None,
            ip_address=event.client_ip,
            user_agent=event.user_agent or None,
            auth_context=event.auth_context or None,
        )
    elif event.client_ip or event.user_agent or event.auth_context:
        raise InvalidRecord("actor", "client_ip, user_agent and auth_context need an actor")
    record = PredictionRecord.create(
        model_name=model.model_name,
        model_version=model.version,
        features=event.features,
        output=event.output,
        decision_outcome=event.decision_outcome or None,
        confidence=event.confidence,
        actor=actor,
        environment=event.environment or None,
        trace_id=event.trace_id or event.correlation_id or None,
        latency_ms=event.latency_ms,
        status=event.status,
        error_type=event.error_type or None,
        error_message=event.error_message or None,
        metadata=event.metadata,
        prediction_id=event.prediction_id or None,
        timestamp=event.timestamp,
        default_environment=audit_settings.ENVIRONMENT,
        naive_datetime_policy=audit_settings.NAIVE_DATETIME_POLICY,
        event_id=event.pk,
        max_payload_bytes=audit_settings.MAX_PAYLOAD_BYTES,
        # A reference the caller computed (ml_audit.subjects.subject_ref), checked as such.
        subject_ref=event.subject_ref or "",
    )
    _copy_row(event, record_through_span(record, using=using))


def record_explanation_instance(explanation: Explanation, using: str | None) -> None:
    """Record an unsaved ``Explanation`` as :func:`attach_explanation` attaches one."""
    if explanation.prediction_id is None:
        raise InvalidRecord("prediction", "an Explanation needs its PredictionEvent")
    row = attach_explanation(
        explanation.prediction,
        explanation.method,
        explanation.payload,
        explanation.summary_text,
        method_version=explanation.method_version,
        status=explanation.status,
        generated_at=explanation.generated_at,
        using=using,
    )
    _copy_row(explanation, row)
