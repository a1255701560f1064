"""``attach_explanation``: append an explanation revision to a recorded prediction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from ml_audit import store
from ml_audit.conf import audit_settings
from ml_audit.exceptions import InvalidRecord, PredictionNotFound
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.normalise import check_storable_text
from ml_audit.otel.spans import emit_explanation_span
from ml_audit.records import MAX_PREDICTION_ID, ExplanationRecord

__all__ = ["attach_explanation", "explanation_record", "resolve_prediction"]


def resolve_prediction(
    prediction: PredictionEvent | uuid.UUID | str, *, using: str | None = None
) -> PredictionEvent:
    """Find a prediction by instance, UUID primary key, or ``prediction_id`` string.

    A string is looked up as a ``prediction_id`` first, and only then, if it parses as a UUID,
    as a primary key: a caller's own prediction ids that happen to look like UUIDs always win.
    A ``uuid.UUID`` object is a primary key.
    """
    alias = store.resolve_alias(using)
    queryset = PredictionEvent.objects.using(alias)
    if isinstance(prediction, PredictionEvent):
        if prediction._state.adding or prediction.pk is None:
            raise PredictionNotFound("the PredictionEvent instance has not been saved")
        return prediction
    if isinstance(prediction, uuid.UUID):
        found = queryset.filter(pk=prediction).first()
        if found is None:
            raise PredictionNotFound(f"no prediction has the primary key {prediction}")
        return found
    if not isinstance(prediction, str) or not prediction:
        raise InvalidRecord(
            "prediction",
            "must be a PredictionEvent, a UUID primary key or a prediction_id string, "
            f"not {type(prediction).__name__}",
        )
    if len(prediction) > MAX_PREDICTION_ID:
        raise PredictionNotFound(f"no prediction_id is {len(prediction)} characters long")
    check_storable_text("prediction", prediction)  # a NUL or a lone surrogate: no row has it
    try:
        as_uuid: uuid.UUID | None = uuid.UUID(prediction)
    except ValueError:
        as_uuid = None
    if as_uuid is None:
        found = queryset.filter(prediction_id=prediction).first()
    else:
        # One query for both readings; the prediction_id reading wins.
        candidates = list(queryset.filter(prediction_id=prediction) | queryset.filter(pk=as_uuid))
        found = next((c for c in candidates if c.prediction_id == prediction), None)
        found = found or (candidates[0] if candidates else None)
    if found is None:
        raise PredictionNotFound(
            f"no prediction has the prediction_id or primary key {prediction!r}"
        )
    return found


def explanation_record(
    method: str,
    payload: Any,
    summary_text: str = "",
    *,
    method_version: str = "",
    status: str = "success",
    generated_at: dt.datetime | None = None,
) -> ExplanationRecord:
    """The explanation :func:`attach_explanation` stores for these arguments: validated, and
    redacted when ``ML_AUDIT['REDACT_PAYLOADS']`` names ``"explanation"``."""
    record = ExplanationRecord.create(
        method=method,
        payload=payload,
        summary_text=summary_text,
        method_version=method_version,
        status=status,
        generated_at=generated_at,
        naive_datetime_policy=audit_settings.NAIVE_DATETIME_POLICY,
        max_payload_bytes=audit_settings.MAX_PAYLOAD_BYTES,
    )
    # The value detectors always run (an address in a summary is an address); the key rules
    # too when REDACT_PAYLOADS names "explanation".
    return record.redact(
        audit_settings.redaction_policy, keys="explanation" in audit_settings.REDACT_PAYLOADS
    )


def attach_explanation(
    prediction: PredictionEvent | uuid.UUID | str,
    method: str,
    payload: Any,
    summary_text: str = "",
    *,
    method_version: str = "",
    status: str = "success",
    generated_at: dt.datetime | None = None,
    using: str | None = None,
) -> Explanation:
    """Attach an explanation (SHAP, LIME, reason codes...) to a recorded prediction.

    Returns the current :class:`~ml_audit.models.Explanation`. Attaching again adds a new
    revision and keeps the earlier ones as history; attaching exactly the same content as the
    current revision is a no-op that returns it. ``generated_at`` (default: now) is stored as
    given and must be timezone-aware unless ``NAIVE_DATETIME_POLICY`` is ``"utc"``.

    Raises :class:`~ml_audit.exceptions.PredictionNotFound` when the prediction does not exist
    and :class:`~ml_audit.exceptions.InvalidRecord` for invalid arguments.
    """
    record = explanation_record(
        method,
        payload,
        summary_text,
        method_version=method_version,
        status=status,
        generated_at=generated_at,
    )
    event = resolve_prediction(prediction, using=using)
    explanation, written = store.append_explanation(event, record, using=using or event._state.db)
    if not written:
        return explanation  # the identical current revision: nothing happened to trace
    # The stored revision's content: redacted (explanation_record) before it was stored.
    emit_explanation_span(
        prediction_id=event.prediction_id,
        trace_id=event.trace_id,
        span_id=event.span_id,
        method=explanation.method,
        revision=explanation.revision,
        status=explanation.status,
        method_version=explanation.method_version,
        summary_text=explanation.summary_text,
        payload=explanation.payload,
    )
    return explanation
