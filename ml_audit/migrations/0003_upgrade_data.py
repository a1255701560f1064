"""From 0.2.0's schema towards ours, part 2: the rows 0.2.0 wrote, made whole.

Runs on every install; on a fresh one the tables are empty and it does nothing. For rows of a
database that django-ml-audit 0.2.0 created:

- per-request context that 0.2.0 kept on the actor row (``ip_address``, ``user_agent``,
  ``auth_context``) is copied onto each of its predictions, with the actor's tenant;
- actors that 0.2.0 stored twice under one identity (it had no unique constraint) are merged
  into the oldest row, and their predictions point at it;
- a ``trace_id`` that is not a W3C trace id (0.2.0's DRF decorator stored ``X-Request-ID``
  there) moves to ``correlation_id``;
- ``input_fingerprint`` becomes ours (SHA-256 of the redacted features); a fingerprint the
  caller supplied, 0.2.0's ``created_at`` / ``updated_at``, and any value outside our
  constraints (a confidence outside [0, 1], a negative latency, an unknown status, which
  becomes ``failed``) are kept under ``metadata["ml_audit_0_2_0"]``;
- ``redaction`` says which top-level features carry 0.2.0's mask;
- content hashes are computed, so ``verify_event`` / ``verify_explanation`` hold for every
  migrated row before ``0005`` makes the tables append-only.

Nothing is deleted but duplicate actor rows (their predictions are kept and re-pointed).
"""

import datetime as dt

from django.conf import settings
from django.db import migrations

from ml_audit.records import (
    PREDICTION_STATUSES,
    ActorPayload,
    ExplanationRecord,
    PredictionRecord,
    is_w3c_trace_id,
    sha256_hex,
)

CHUNK = 500
UPGRADE_KEY = "ml_audit_0_2_0"
EXPLANATION_STATUSES = ("success", "failed", "partial", "pending")


def _iso(value):
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _mask_value():
    config = getattr(settings, "ML_AUDIT_REDACTION", None) or {}
    return str(config.get("MASK_VALUE", "*****"))


def _merge_duplicate_actors(Actor, Event, alias):
    seen = {}
    for actor in Actor.objects.using(alias).order_by("created_at", "id").iterator():
        key = (actor.actor_type, actor.actor_id, actor.tenant_id)
        keeper = seen.setdefault(key, actor.pk)
        if keeper != actor.pk:
            Event.objects.using(alias).filter(actor_id=actor.pk).update(actor_id=keeper)
            Actor.objects.using(alias).filter(pk=actor.pk).delete()


def _upgrade_event(event, mask):
    notes = {"created_at": _iso(event.created_at), "updated_at": _iso(event.updated_at)}
    actor_row = event.actor
    actor = None
    if actor_row is not None:
        context = actor_row.auth_context
        if context is not None and not isinstance(context, dict):
            context = {"auth_context": context}
        event.client_ip = actor_row.ip_address
        event.user_agent = actor_row.user_agent or ""
        event.auth_context = context or {}
        event.tenant_id = actor_row.tenant_id
        actor = ActorPayload.stored(
            actor_type=actor_row.actor_type,
            actor_id=actor_row.actor_id,
            tenant_id=actor_row.tenant_id or None,
            ip_address=event.client_ip,
            user_agent=event.user_agent or None,
            auth_context=event.auth_context or None,
        )
    if event.trace_id and not is_w3c_trace_id(event.trace_id):
        event.correlation_id, event.trace_id = event.trace_id, ""
    if event.input_fingerprint:
        notes["input_fingerprint"] = event.input_fingerprint
    if event.confidence is not None and not 0 <= event.confidence <= 1:
        notes["confidence"], event.confidence = event.confidence, None
    if event.latency_ms is not None and event.latency_ms < 0:
        notes["latency_ms"], event.latency_ms = event.latency_ms, None
    if event.status not in PREDICTION_STATUSES:
        notes["status"], event.status = event.status, "failed"
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    if event.metadata is not None and not isinstance(event.metadata, dict):
        notes["metadata"] = event.metadata
    event.metadata = {**metadata, UPGRADE_KEY: notes}
    features = event.features
    masked = (
        sorted(str(key) for key, value in features.items() if value == mask)
        if isinstance(features, dict)
        else []
    )
    event.redaction = {"policy": "0.2.0", "paths": {"features": masked} if masked else {}}
    record = PredictionRecord(
        event_id=event.pk,
        prediction_id=event.prediction_id,
        timestamp=event.timestamp,
        model_name=event.model.model_name,
        model_version=event.model.version,
        environment=event.environment,
        actor=actor,
        features=features,
        output=event.output,
        confidence=event.confidence,
        decision_outcome=event.decision_outcome,
        status=event.status,
        error_type=event.error_type,
        error_message=event.error_message,
        latency_ms=event.latency_ms,
        metadata=event.metadata,
        trace_id=event.trace_id,
        span_id=event.span_id,
        parent_span_id=event.parent_span_id,
        correlation_id=event.correlation_id,
        redaction=event.redaction,
    )
    event.input_fingerprint = record.input_fingerprint
    event.content_hash = record.content_hash()


def _pages(queryset):
    """Lists of at most CHUNK rows in primary-key order (keyset: safe to update as we go)."""
    last = None
    while True:
        page = queryset if last is None else queryset.filter(pk__gt=last)
        chunk = list(page.order_by("pk")[:CHUNK])
        if not chunk:
            return
        yield chunk
        last = chunk[-1].pk


EVENT_FIELDS = (
    "client_ip",
    "user_agent",
    "auth_context",
    "tenant_id",
    "trace_id",
    "correlation_id",
    "input_fingerprint",
    "confidence",
    "latency_ms",
    "status",
    "metadata",
    "redaction",
    "content_hash",
)


def forwards(apps, schema_editor):
    alias = schema_editor.connection.alias
    ModelVersion = apps.get_model("ml_audit", "ModelVersion")
    Actor = apps.get_model("ml_audit", "RequestingActor")
    Event = apps.get_model("ml_audit", "PredictionEvent")
    Explanation = apps.get_model("ml_audit", "Explanation")
    ModelVersion.objects.using(alias).filter(config_snapshot__isnull=True).update(
        config_snapshot={}
    )
    mask = _mask_value()
    for chunk in _pages(Event.objects.using(alias).select_related("model", "actor")):
        for event in chunk:
            _upgrade_event(event, mask)
        Event.objects.using(alias).bulk_update(chunk, EVENT_FIELDS)
    # After the context was copied onto the events: merging actors loses nothing of it.
    _merge_duplicate_actors(Actor, Event, alias)
    for chunk in _pages(Explanation.objects.using(alias)):
        for row in chunk:
            if row.status not in EXPLANATION_STATUSES:
                row.status = "failed"
            record = ExplanationRecord(
                method=row.method,
                method_version=row.method_version,
                payload=row.payload,
                summary_text=row.summary_text,
                status=row.status,
                generated_at=row.generated_at,
            )
            row.content_hash = sha256_hex(
                record.stored_fields(
                    explanation_id=row.pk,
                    prediction_pk=row.prediction_id,
                    revision=row.revision,
                    created_at=row.created_at,
                )
            )
        Explanation.objects.using(alias).bulk_update(chunk, ("status", "content_hash"))


class Migration(migrations.Migration):
    dependencies = [("ml_audit", "0002_upgrade_schema")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False)]
