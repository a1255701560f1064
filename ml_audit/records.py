"""Plain, validated, JSON-normalised records: what a prediction *is*, before it is a span or a row.

Nothing here touches the database or OpenTelemetry. A :class:`PredictionRecord` is built by
:meth:`PredictionRecord.create` (which validates every argument and normalises payloads to JSON
with :mod:`ml_audit.normalise`), redacted by :meth:`PredictionRecord.redact`, and then handed to
the writer in :mod:`ml_audit.store`, which refuses records that were not redacted. Ids come from
:mod:`ml_audit.ids`, content hashes from :mod:`ml_audit.canonical`, the actor from
:mod:`ml_audit.actor_records`; their names are importable from here too.

A record names its data subject only by ``subject_ref``, a pseudonymous reference computed by
:mod:`ml_audit.subjects` before the record exists (the identifier never reaches a record). It
is part of the stored fields, and so of the content hash, only when set: a record without a
subject hashes exactly as it did before subjects existed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from ml_audit.actor_records import ActorPayload, _actor_dict
from ml_audit.canonical import (
    RECORD_SCHEMA,
    canonical_json,
    canonical_json_of_mapping,
    sha256_hex,
)
from ml_audit.exceptions import InvalidRecord
from ml_audit.explanation_records import ExplanationRecord
from ml_audit.ids import is_w3c_trace_id, uuid7
from ml_audit.normalise import MAX_DEPTH, check_payload_size, to_json
from ml_audit.redaction import (
    RedactionPolicy,
    redact,
    redact_error_type,
    redact_flat,
)
from ml_audit.validation import (
    _NO_OUTCOME,
    _SPAN_ID,
    ACTOR_TYPES,
    EXPLANATION_STATUSES,
    MAX_ACTOR_ID,
    MAX_CORRELATION_ID,
    MAX_DECISION_OUTCOME,
    MAX_ENVIRONMENT,
    MAX_ERROR_MESSAGE,
    MAX_ERROR_TYPE,
    MAX_EXPLANATION_METHOD,
    MAX_MODEL_NAME,
    MAX_MODEL_VERSION,
    MAX_PREDICTION_ID,
    MAX_TENANT_ID,
    PREDICTION_STATUSES,
    _check_hex,
    _check_identifier,
    _check_mapping,
    _check_subject_ref,
    _check_text,
    _check_timestamp,
    _check_unit_float,
    _outcome_fields,
    split_trace_reference,
)

__all__ = [
    "ACTOR_TYPES",
    "EXPLANATION_STATUSES",
    "IDENTITY_FIELDS",
    "MAX_ACTOR_ID",
    "MAX_CORRELATION_ID",
    "MAX_DECISION_OUTCOME",
    "MAX_DEPTH",
    "MAX_ENVIRONMENT",
    "MAX_ERROR_MESSAGE",
    "MAX_ERROR_TYPE",
    "MAX_EXPLANATION_METHOD",
    "MAX_MODEL_NAME",
    "MAX_MODEL_VERSION",
    "MAX_PREDICTION_ID",
    "MAX_TENANT_ID",
    "PREDICTION_STATUSES",
    "RECORD_SCHEMA",
    "ActorPayload",
    "ExplanationRecord",
    "PredictionRecord",
    "canonical_json",
    "canonical_json_of_mapping",
    "is_w3c_trace_id",
    "sha256_hex",
    "split_trace_reference",
    "to_json",
    "uuid7",
]

#: Fields compared when a prediction_id is recorded again (see ``PredictionConflict``).
#: Transport context (timestamp, latency, trace ids, client IP, user agent, auth context) is
#: deliberately not part of a prediction's identity: a retried request carries new values.
IDENTITY_FIELDS = (
    "model_name",
    "model_version",
    "environment",
    "actor",
    "features",
    "output",
    "confidence",
    "decision_outcome",
    "status",
    "error_type",
    "metadata",
    "subject_ref",
)

_set_attribute = object.__setattr__


# --------------------------------------------------------------------------------------------
# Records


#: Values cached on a record (``functools.cached_property``, in its ``__dict__``) and the
#: field each one is derived from: a copy that changes that field drops it.
_CACHED_FIELDS = {
    "input_fingerprint": "features",
    "_features_json": "features",
    "_event_id_text": "event_id",
}


def _evolve(record: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` without re-running ``__init__`` (a hot path: several per call).

    Only for already-validated records; cached derived values of changed fields are dropped.
    """
    return _replace(record, changes)


def _replace(record: Any, changes: Mapping[str, Any]) -> Any:
    """:func:`_evolve` with the changes as a mapping (no keyword packing)."""
    clone = object.__new__(type(record))
    # Filled in place: cheaper than assigning a copied dict as the new object's __dict__.
    state = clone.__dict__
    state.update(record.__dict__)
    if len(state) > _FIELD_COUNT:  # some derived value was cached: it may no longer hold
        for name, source in _CACHED_FIELDS.items():
            if source in changes:
                state.pop(name, None)
    state.update(changes)
    return clone


class PreparedFeatures:
    """The features of a draft record, redacted ahead of time by ``policy`` (internal).

    :func:`create_draft` builds it in the same walk that validates and normalises the features
    (:func:`ml_audit.redaction.redact_flat`): ``value`` and ``paths`` are what
    ``redact(features, policy)`` gives. The span helpers pass it to
    :meth:`PredictionRecord._redact`, which uses it only if the policy is still the same object
    and the record still holds the very features dict it was computed from.
    """

    __slots__ = ("features", "paths", "policy", "value")

    def __init__(
        self,
        policy: RedactionPolicy,
        features: dict[str, Any],
        value: dict[str, Any],
        paths: tuple[str, ...],
    ) -> None:
        self.policy = policy
        self.features = features
        self.value = value
        self.paths = paths


@dataclasses.dataclass(frozen=True)
class PredictionRecord:
    """One prediction, validated and JSON-normalised; redacted once :meth:`redact` has run.

    Build it with :meth:`create`; the constructor itself does no validation and is used by the
    writer and by decoders that rebuild a record from stored data.
    """

    event_id: uuid.UUID
    prediction_id: str
    timestamp: dt.datetime
    model_name: str
    model_version: str
    environment: str
    actor: ActorPayload | None
    features: dict[str, Any]
    output: Any
    confidence: float | None
    decision_outcome: str
    status: str
    error_type: str
    error_message: str
    latency_ms: float | None
    metadata: dict[str, Any]
    trace_id: str = ""
    span_id: str = ""
    parent_span_id: str = ""
    correlation_id: str = ""
    #: ``None`` until redacted; then ``{"policy": version, "paths": {payload: [paths]}}``.
    redaction: dict[str, Any] | None = None
    #: The data subject's pseudonymous reference (:mod:`ml_audit.subjects`); "" for none.
    subject_ref: str = ""

    # ---------------------------------------------------------------- construction

    @classmethod
    def create(
        cls,
        *,
        model_name: Any,
        model_version: Any,
        features: Any,
        output: Any = None,
        decision_outcome: Any = None,
        confidence: Any = None,
        actor: ActorPayload | Mapping[str, Any] | None = None,
        environment: Any = None,
        trace_id: Any = None,
        latency_ms: Any = None,
        status: Any = "success",
        error_type: Any = None,
        error_message: Any = None,
        metadata: Any = None,
        prediction_id: Any = None,
        timestamp: Any = None,
        span_id: str = "",
        parent_span_id: str = "",
        default_environment: str = "",
        naive_datetime_policy: str = "reject",
        event_id: uuid.UUID | None = None,
        max_payload_bytes: int | None = None,
        subject_ref: str = "",
    ) -> PredictionRecord:
        """Validate and normalise the arguments of a recording call.

        ``max_payload_bytes`` bounds each of features, output and metadata (see
        :func:`ml_audit.normalise.check_payload_size`), checked before any other work on them.
        Raises :class:`~ml_audit.exceptions.InvalidRecord` naming the first invalid field.
        """
        record, _ = create_draft(
            cls,
            None,
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
            span_id=span_id,
            parent_span_id=parent_span_id,
            default_environment=default_environment,
            naive_datetime_policy=naive_datetime_policy,
            event_id=event_id,
            max_payload_bytes=max_payload_bytes,
            subject_ref=subject_ref,
        )
        return record

    def with_outcome(
        self,
        *,
        output: Any = None,
        confidence: Any = None,
        decision_outcome: Any = None,
        status: Any = "success",
        error_type: Any = None,
        error_message: Any = None,
        metadata: Any = None,
        max_payload_bytes: int | None = None,
    ) -> PredictionRecord:
        """A copy with the outcome of the prediction, validated like :meth:`create`.

        Used by the span helpers, which know the inputs when the prediction starts and the
        outcome when it ends. ``metadata`` (a mapping) is merged over the existing metadata.
        """
        if self.redaction is not None:
            raise ValueError("record is already redacted; set the outcome before redacting")
        if max_payload_bytes is not None:
            check_payload_size("output", output, max_payload_bytes)
            check_payload_size("metadata", metadata, max_payload_bytes)
        extra = None if metadata is None else _check_mapping("metadata", metadata, optional=True)
        changes = _outcome_fields(
            output, confidence, decision_outcome, status, error_type, error_message
        )
        changes["metadata"] = {**self.metadata} if extra is None else {**self.metadata, **extra}
        return _replace(self, changes)  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- redaction

    @property
    def is_redacted(self) -> bool:
        return self.redaction is not None

    def redact(self, policy: RedactionPolicy, payloads: frozenset[str]) -> PredictionRecord:
        """Return a copy with the named payloads redacted by ``policy``.

        ``features`` is always redacted; ``output``, ``metadata`` and ``auth_context`` when
        named in ``payloads``. Value detectors also run on ``error_message`` (exception texts
        often quote the offending input). Redacting twice is an error: a redacted record's
        paths would otherwise be lost.
        """
        return self._redact(policy, payloads, None)

    def _redact(
        self,
        policy: RedactionPolicy,
        payloads: frozenset[str],
        prepared: PreparedFeatures | None,
    ) -> PredictionRecord:
        """:meth:`redact`, reusing the features' redaction from ``prepared`` when it applies."""
        if self.redaction is not None:
            raise ValueError("record is already redacted")
        paths: dict[str, list[str]] = {}
        if (
            prepared is not None
            and prepared.policy is policy
            and prepared.features is self.features
        ):
            changes: dict[str, Any] = {"features": prepared.value}
            if prepared.paths:
                paths["features"] = list(prepared.paths)
        else:
            result = redact(self.features, policy)
            changes = {"features": result.value}
            if result.paths:
                paths["features"] = list(result.paths)
        if "output" in payloads:
            result = redact(self.output, policy)
            if result.paths:
                paths["output"] = list(result.paths)
            changes["output"] = result.value
        if "metadata" in payloads:
            result = redact(self.metadata, policy)
            if result.paths:
                paths["metadata"] = list(result.paths)
            changes["metadata"] = result.value
        actor = self.actor
        if actor is not None and actor.auth_context and "auth_context" in payloads:
            result = redact(actor.auth_context, policy)
            if result.paths:
                paths["auth_context"] = list(result.paths)
            changes["actor"] = dataclasses.replace(actor, auth_context=result.value)
        if self.error_message:
            result = redact(self.error_message, policy)
            if result.paths:
                paths["error_message"] = list(result.paths)
            # drop mode removes the whole value
            changes["error_message"] = result.value if isinstance(result.value, str) else ""
        if self.error_type:
            result = redact_error_type(self.error_type, policy)
            if result.paths:
                paths["error_type"] = list(result.paths)
                changes["error_type"] = result.value
        changes["redaction"] = {"policy": policy.version, "paths": paths}
        return _replace(self, changes)  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- derived values

    @property
    def tenant_id(self) -> str:
        return (self.actor.tenant_id or "") if self.actor else ""

    @functools.cached_property
    def _event_id_text(self) -> str:
        """``str(self.event_id)`` (span attributes; set by ``create_draft``, which has it)."""
        return str(self.event_id)

    @functools.cached_property
    def _features_json(self) -> str:
        return canonical_json(self.features)

    @functools.cached_property
    def input_fingerprint(self) -> str:
        """SHA-256 of the *redacted* features: equal inputs match without being revealed."""
        return hashlib.sha256(self._features_json.encode("utf-8")).hexdigest()

    def identity(self) -> dict[str, Any]:
        """The values compared when the same ``prediction_id`` is recorded again."""
        values = {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "environment": self.environment,
            "actor": self.actor.identity() if self.actor else None,
            "features": self.features,
            "output": self.output,
            "confidence": self.confidence,
            "decision_outcome": self.decision_outcome,
            "status": self.status,
            "error_type": self.error_type,
            "metadata": self.metadata,
            "subject_ref": self.subject_ref,
        }
        assert tuple(values) == IDENTITY_FIELDS
        return values

    def stored_fields(self) -> dict[str, Any]:
        """Everything the row stores, as JSON: the input of :meth:`content_hash`.

        ``subject_ref`` only when set, so that every row without a subject (all rows stored
        before subjects existed) keeps its content hash.
        """
        actor = self.actor
        fields: dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "id": str(self.event_id),
            "prediction_id": self.prediction_id,
            "timestamp": self.timestamp.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            "model": {"name": self.model_name, "version": self.model_version},
            "environment": self.environment,
            "actor": actor.identity() if actor else None,
            "tenant_id": self.tenant_id,
            "client_ip": actor.ip_address if actor else None,
            "user_agent": (actor.user_agent or "") if actor else "",
            "auth_context": dict(actor.auth_context or {}) if actor else {},
            "features": self.features,
            "redaction": self.redaction,
            "input_fingerprint": self.input_fingerprint,
            "output": self.output,
            "confidence": self.confidence,
            "decision_outcome": self.decision_outcome,
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "latency_ms": self.latency_ms,
            "metadata": self.metadata,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "correlation_id": self.correlation_id,
        }
        if self.subject_ref:
            fields["subject_ref"] = self.subject_ref
        return fields

    def evolve(self, **changes: Any) -> PredictionRecord:
        """A copy with ``changes`` (not validated: for fields the library itself sets)."""
        if not changes.keys() <= self.__dataclass_fields__.keys():
            unknown = sorted(changes.keys() - self.__dataclass_fields__.keys())
            raise TypeError(f"unknown PredictionRecord field(s): {', '.join(unknown)}")
        return _evolve(self, **changes)  # type: ignore[no-any-return]

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`stored_fields` (tamper evidence)."""
        text = canonical_json_of_mapping(self.stored_fields(), {"features": self._features_json})
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self, *, native: bool = False) -> dict[str, Any]:
        """A lossless JSON form of the record (for spool files); inverse of :meth:`from_dict`.

        ``subject_ref`` is written only when set (lines written before subjects existed, which
        lack it, read back as records without a subject).

        With ``native`` the id and the timestamp stay ``UUID`` and ``datetime`` objects, for an
        encoder that writes them itself (orjson: faster on the request thread); the JSON text
        reads back as the same record.
        """
        timestamp = self.timestamp.astimezone(dt.UTC)
        data: dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "event_id": self.event_id if native else self._event_id_text,
            "prediction_id": self.prediction_id,
            "timestamp": timestamp if native else timestamp.isoformat(timespec="microseconds"),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "environment": self.environment,
            "actor": _actor_dict(self.actor) if self.actor else None,
            "features": self.features,
            "output": self.output,
            "confidence": self.confidence,
            "decision_outcome": self.decision_outcome,
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "latency_ms": self.latency_ms,
            "metadata": self.metadata,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "correlation_id": self.correlation_id,
            "redaction": self.redaction,
        }
        if self.subject_ref:  # only when set: lines without a subject stay as they were
            data["subject_ref"] = self.subject_ref
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PredictionRecord:
        """Rebuild a record written by :meth:`to_dict`."""
        if data.get("schema") != RECORD_SCHEMA:
            raise InvalidRecord("schema", f"unsupported record schema {data.get('schema')!r}")
        fields = dict(data)
        del fields["schema"]
        actor = fields.pop("actor")
        timestamp = dt.datetime.fromisoformat(fields.pop("timestamp")).astimezone(dt.UTC)
        event_id = uuid.UUID(fields.pop("event_id"))
        return cls(
            **fields,
            event_id=event_id,
            timestamp=timestamp,
            actor=ActorPayload(**actor) if actor else None,
        )


#: The payload fields a record's ``redaction["paths"]`` may name.
_REDACTED_FIELDS = frozenset(
    {"features", "output", "metadata", "auth_context", "error_message", "error_type"}
)
#: The fields :func:`revalidated` hands to ``create`` as they are, and those stored as "" when
#: not given (handed over as None, as a call leaves them).
_REVALIDATED_AS_IS = (
    "model_name",
    "model_version",
    "features",
    "output",
    "confidence",
    "actor",
    "environment",
    "latency_ms",
    "status",
    "metadata",
    "prediction_id",
    "timestamp",
    "span_id",
    "parent_span_id",
    "event_id",
    "subject_ref",
)
_REVALIDATED_OR_NONE = ("decision_outcome", "error_type", "error_message")


def revalidated(record: PredictionRecord) -> PredictionRecord:
    """``record``, rebuilt from data that did not come through :meth:`PredictionRecord.create`
    (a span's attributes), checked as ``create`` checks a call, and normalised the same way.

    Its ids, correlation id and redaction description are kept (after checking their shape):
    the record must already say it was redacted. Raises :class:`InvalidRecord` naming the first
    invalid field.
    """
    arguments = {name: getattr(record, name) for name in _REVALIDATED_AS_IS}
    arguments.update({name: getattr(record, name) or None for name in _REVALIDATED_OR_NONE})
    checked = PredictionRecord.create(**arguments)
    trace_id = record.trace_id
    if trace_id and not is_w3c_trace_id(trace_id):
        raise InvalidRecord("trace_id", "must be 32 lower-case hex digits, not all zero")
    correlation_id = _check_text(
        "correlation_id", record.correlation_id, MAX_CORRELATION_ID, allow_empty=True
    )
    return _replace(  # type: ignore[no-any-return]
        checked,
        {
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "redaction": _check_redaction(record.redaction),
        },
    )


def _check_redaction(value: Any) -> dict[str, Any]:
    """A ``redaction`` description as ``_redact`` writes it: ``{"policy": str, "paths":
    {field: [path, ...]}}``."""
    if not isinstance(value, dict):
        raise InvalidRecord("redaction", "the record does not say it was redacted")
    policy, paths = value.get("policy"), value.get("paths")
    if set(value) != {"policy", "paths"} or not isinstance(policy, str):
        raise InvalidRecord("redaction", "must be {'policy': str, 'paths': {...}}")
    if not isinstance(paths, dict) or not all(
        field in _REDACTED_FIELDS
        and isinstance(names, list)
        and all(isinstance(name, str) for name in names)
        for field, names in paths.items()
    ):
        raise InvalidRecord("redaction", "paths must map payload fields to lists of paths")
    return {"policy": policy, "paths": {field: list(names) for field, names in paths.items()}}


_FIELD_COUNT = len(dataclasses.fields(PredictionRecord))


def create_draft(
    cls: type[PredictionRecord],
    policy: RedactionPolicy | None,
    *,
    model_name: Any,
    model_version: Any,
    features: Any,
    output: Any = None,
    decision_outcome: Any = None,
    confidence: Any = None,
    actor: ActorPayload | Mapping[str, Any] | None = None,
    environment: Any = None,
    trace_id: Any = None,
    latency_ms: Any = None,
    status: Any = "success",
    error_type: Any = None,
    error_message: Any = None,
    metadata: Any = None,
    prediction_id: Any = None,
    timestamp: Any = None,
    span_id: str = "",
    parent_span_id: str = "",
    default_environment: str = "",
    naive_datetime_policy: str = "reject",
    event_id: uuid.UUID | None = None,
    max_payload_bytes: int | None = None,
    subject_ref: str = "",
) -> tuple[PredictionRecord, PreparedFeatures | None]:
    """:meth:`PredictionRecord.create`, and the features redacted by ``policy`` ahead of time.

    With a ``policy`` and flat features (see :func:`ml_audit.redaction.redact_flat`) the
    features are validated, normalised and redacted in one walk, and the redaction is returned
    for :meth:`PredictionRecord._redact`; otherwise the second item is None. The record is the
    one ``create`` returns, and the same arguments raise the same ``InvalidRecord``. Fields
    are checked in the order of the dataclass (outcome: status first), the first invalid one
    is reported.
    """
    if type(features) is not dict and not isinstance(features, Mapping):
        raise InvalidRecord("features", f"must be a mapping (dict), not {type(features).__name__}")
    if max_payload_bytes is not None:
        # Before any other work: a 50 MB feature is refused in microseconds, not redacted.
        check_payload_size("features", features, max_payload_bytes)
        check_payload_size("output", output, max_payload_bytes)
        check_payload_size("metadata", metadata, max_payload_bytes)
    event_id = event_id or uuid7()
    event_text = None
    if prediction_id is None:
        prediction_id = str(event_id)
        if type(event_id) is uuid.UUID:  # canonical text: _check_text would return it as it is
            event_text = prediction_id
    # Below, each "x if <default> else _check_...(x)" is what the check returns for the default.
    if trace_id is None:
        w3c_trace_id = correlation_id = ""
    else:
        w3c_trace_id, correlation_id = split_trace_reference(trace_id)
    env = default_environment if environment is None else environment
    state: dict[str, Any] = {
        "event_id": event_id,
        "prediction_id": (
            prediction_id
            if event_text is not None
            else _check_text("prediction_id", prediction_id, MAX_PREDICTION_ID)
        ),
        "timestamp": (
            dt.datetime.now(dt.UTC)
            if timestamp is None
            else _check_timestamp(timestamp, naive_datetime_policy)
        ),
        "model_name": _check_text("model_name", model_name, MAX_MODEL_NAME),
        "model_version": (
            _check_text("model_version", model_version, MAX_MODEL_VERSION)
            if type(model_version) is str
            else _check_identifier(
                "model_version", model_version, MAX_MODEL_VERSION, optional=False
            )
        ),
        "environment": (
            ""
            if type(env) is str and not env
            else _check_text("environment", env, MAX_ENVIRONMENT, allow_empty=True)
        ),
        "actor": actor if type(actor) is ActorPayload else ActorPayload.coerce(actor),
    }
    prepared = None
    fused = redact_flat(features, policy) if policy is not None else None
    if fused is not None:
        state["features"] = fused[0]
        prepared = PreparedFeatures(policy, *fused)  # type: ignore[arg-type]
    else:
        state["features"] = _check_mapping("features", features, optional=False)
    if (
        output is None
        and confidence is None
        and decision_outcome is None
        and type(status) is str
        and status == "success"
        and error_type is None
        and error_message is None
    ):
        state.update(_NO_OUTCOME)
    else:
        state.update(
            _outcome_fields(output, confidence, decision_outcome, status, error_type, error_message)
        )
    state["latency_ms"] = (
        None if latency_ms is None else _check_unit_float("latency_ms", latency_ms, upper=None)
    )
    state["metadata"] = (
        {} if metadata is None else _check_mapping("metadata", metadata, optional=True)
    )
    state["trace_id"] = w3c_trace_id
    state["span_id"] = _check_hex("span_id", span_id, _SPAN_ID) if span_id else span_id
    state["parent_span_id"] = (
        _check_hex("parent_span_id", parent_span_id, _SPAN_ID) if parent_span_id else parent_span_id
    )
    state["correlation_id"] = correlation_id
    state["redaction"] = None
    state["subject_ref"] = _check_subject_ref(subject_ref) if subject_ref else ""
    if cls is PredictionRecord:
        # The dataclass __init__ would only set the (already validated) fields one by one.
        record = object.__new__(cls)
        _set_attribute(record, "__dict__", state)
    else:  # a subclass may have an __init__ or __post_init__ of its own
        record = cls(**state)
    if event_text is not None:
        record.__dict__["_event_id_text"] = event_text  # the cached_property, already known
    return record, prepared
