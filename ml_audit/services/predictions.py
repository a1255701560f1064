"""``record_prediction_event``: validate, redact, write; returns the saved row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ml_audit import store
from ml_audit.conf import audit_settings
from ml_audit.exceptions import InvalidRecord
from ml_audit.models import ModelVersion, PredictionEvent
from ml_audit.otel.spans import record_through_span
from ml_audit.records import ActorPayload, PredictionRecord, to_json

__all__ = ["record_prediction_event", "register_model_version"]


def record_prediction_event(
    model_name: str,
    model_version: str,
    features: Mapping[str, Any],
    output: Any = None,
    *,
    decision_outcome: str | None = None,
    confidence: float | None = None,
    actor: ActorPayload | Mapping[str, Any] | None = None,
    subject: str | int | None = None,
    environment: str | None = None,
    trace_id: str | None = None,
    latency_ms: float | None = None,
    status: str = "success",
    error_type: str | None = None,
    error_message: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    prediction_id: str | None = None,
    timestamp: dt.datetime | None = None,
    using: str | None = None,
    input_fingerprint: str | None = None,
    framework: str | None = None,
    build_id: str | None = None,
    commit_hash: str | None = None,
    config_snapshot: Mapping[str, Any] | None = None,
) -> PredictionEvent:
    """Record one prediction and return the saved :class:`~ml_audit.models.PredictionEvent`.

    ``features`` is redacted before anything is stored (``output``, ``metadata`` and the
    actor's ``auth_context`` too when ``ML_AUDIT['REDACT_PAYLOADS']`` names them).

    ``prediction_id`` is an idempotency key (a new UUIDv7 string when omitted): recording the
    same content again returns the existing row and writes nothing; different content raises
    :class:`~ml_audit.exceptions.PredictionConflict`. ``trace_id`` may be a W3C trace id (stored
    as the trace id) or any other correlation id such as an ``X-Request-ID`` (stored as
    ``correlation_id``). ``timestamp`` defaults to now and must be timezone-aware unless
    ``ML_AUDIT['NAIVE_DATETIME_POLICY']`` is ``"utc"``.

    The prediction is an OpenTelemetry span ``ml_audit.prediction <model_name>`` (a child of the
    current span, or of the trace named by a W3C ``trace_id``), persisted by the audit span
    processor before this function returns.

    ``subject`` names whom the prediction is about (an applicant's or patient's identifier in
    your system, within the actor's tenant). It is not stored: the row holds the subject's
    pseudonymous reference (:func:`ml_audit.subjects.subject_ref`), which
    ``manage.py ml_audit_forget`` makes unlinkable. Needs ``ML_AUDIT['SUBJECT_KEY']``; raises
    :class:`~ml_audit.subjects.SubjectUnavailable` when the subject key table cannot be reached
    (nothing is written then).

    ``framework``, ``build_id``, ``commit_hash`` and ``config_snapshot`` describe the model
    version when this call creates it (as in 0.2.0; :func:`register_model_version` changes an
    existing one). ``input_fingerprint``, a fingerprint of the caller's own, is kept as
    ``metadata["input_fingerprint"]``: the ``input_fingerprint`` column is always the SHA-256
    of the redacted features, so that equal inputs match whoever recorded them.

    Raises :class:`~ml_audit.exceptions.InvalidRecord` (a ``ValueError``) naming the first
    invalid argument; nothing is written then.
    """
    if input_fingerprint is not None:
        metadata = _with_fingerprint(metadata, input_fingerprint)
    provenance = _provenance(
        framework=framework,
        build_id=build_id,
        commit_hash=commit_hash,
        config_snapshot=config_snapshot,
        given_only=True,
    )
    record = PredictionRecord.create(
        model_name=model_name,
        model_version=model_version,
        features=features,
        output=output,
        decision_outcome=decision_outcome,
        confidence=confidence,
        actor=actor,
        environment=environment,
        trace_id=trace_id,
        latency_ms=latency_ms,
        status=status,
        error_type=error_type,
        error_message=error_message,
        metadata=metadata,
        prediction_id=prediction_id,
        timestamp=timestamp,
        default_environment=audit_settings.ENVIRONMENT,
        naive_datetime_policy=audit_settings.NAIVE_DATETIME_POLICY,
        max_payload_bytes=audit_settings.MAX_PAYLOAD_BYTES,
    )
    if subject is not None:
        from ml_audit.subjects.keys import subject_ref

        ref = subject_ref(subject, tenant=record.tenant_id, create=True, using=using)
        record = record.evolve(subject_ref=ref)
    if provenance:
        ModelVersion.objects.using(store.resolve_alias(using)).get_or_create(
            model_name=record.model_name, version=record.model_version, defaults=provenance
        )
    # The same path as the span helpers: redact, span, processor, writer (synchronously here,
    # so the saved row can be returned).
    event: PredictionEvent = record_through_span(record, using=using)
    return event


def _with_fingerprint(metadata: Mapping[str, Any] | None, fingerprint: Any) -> dict[str, Any]:
    if not isinstance(fingerprint, str):
        raise InvalidRecord(
            "input_fingerprint", f"must be a string, not {type(fingerprint).__name__}"
        )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidRecord("metadata", f"must be a mapping, not {type(metadata).__name__}")
    merged = dict(metadata or {})
    if merged.get("input_fingerprint", fingerprint) != fingerprint:
        raise InvalidRecord(
            "input_fingerprint", "metadata already holds a different 'input_fingerprint'"
        )
    merged["input_fingerprint"] = fingerprint
    return merged


def _provenance(
    *,
    framework: Any,
    build_id: Any,
    commit_hash: Any,
    config_snapshot: Any,
    given_only: bool,
) -> dict[str, Any]:
    """The provenance fields of a model version, checked; with ``given_only`` only those that
    are not None."""
    details: dict[str, Any] = {}
    for field, value in (
        ("framework", framework),
        ("build_id", build_id),
        ("commit_hash", commit_hash),
    ):
        if value is None and given_only:
            continue
        if not isinstance(value, str):
            raise InvalidRecord(field, f"must be a string, not {type(value).__name__}")
        details[field] = value
    if config_snapshot is not None or not given_only:
        details["config_snapshot"] = to_json(dict(config_snapshot or {}), "config_snapshot")
    return details


def register_model_version(
    name: str,
    version: str,
    *,
    framework: str = "",
    build_id: str = "",
    commit_hash: str = "",
    config_snapshot: Mapping[str, Any] | None = None,
    using: str | None = None,
) -> ModelVersion:
    """Create or update the provenance of a model version (framework, build, commit, config).

    Predictions create their model version on first use; call this at deploy time to add
    provenance. Model versions are registry rows, not audit rows, so they can be updated.
    """
    record = PredictionRecord.create(model_name=name, model_version=version, features={})
    details = _provenance(
        framework=framework,
        build_id=build_id,
        commit_hash=commit_hash,
        config_snapshot=config_snapshot,
        given_only=False,
    )
    alias = store.resolve_alias(using)
    model, _ = ModelVersion.objects.using(alias).update_or_create(
        model_name=record.model_name, version=record.model_version, defaults=details
    )
    return model
