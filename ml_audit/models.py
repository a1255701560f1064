"""The audit models, the access log of the REST API and the append-only guard.

``PredictionEvent``, ``Explanation`` and ``AccessLog`` rows are append-only: the ORM refuses
``save()`` of an existing row, ``delete()``, and QuerySet ``update()`` / ``delete()`` /
``bulk_update()``, and database triggers created by the migrations reject ``UPDATE`` /
``DELETE`` (and ``TRUNCATE`` on PostgreSQL) whatever client issues them. The only deliberate
exception is :func:`ml_audit.store.allow_purge`, for the retention purge.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import models
from django.db.models import Q

from ml_audit import records
from ml_audit.exceptions import AppendOnlyError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "AccessLog",
    "ActorTypeChoice",
    "AppendOnlyModel",
    "AppendOnlyQuerySet",
    "Explanation",
    "ExplanationStatus",
    "FrameworkChoice",
    "IngestCredential",
    "ModelVersion",
    "Outcome",
    "PredictionEvent",
    "PredictionStatus",
    "ReasonCodes",
    "RequestingActor",
    "Review",
    "ReviewAction",
    "Seal",
    "SealMember",
    "SubjectErasure",
    "SubjectKey",
]

# Set by ml_audit.store.allow_purge() for the duration of a retention purge, never otherwise.
purge_allowed: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ml_audit_purge_allowed", default=None
)


def _refuse(model: type[models.Model], action: str) -> AppendOnlyError:
    return AppendOnlyError(
        f"{model.__name__} rows are append-only: {action} is not allowed. Record a new row "
        "instead (for explanations: attach_explanation() adds a revision)."
    )


_M = TypeVar("_M", bound=models.Model)


class AppendOnlyQuerySet(models.QuerySet[_M]):
    """A QuerySet that refuses every bulk mutation of existing rows."""

    def update(self, **kwargs: Any) -> int:
        raise _refuse(self.model, "QuerySet.update()")

    def bulk_update(self, objs: Iterable[_M], fields: Any, batch_size: int | None = None) -> int:
        raise _refuse(self.model, "QuerySet.bulk_update()")

    def update_or_create(self, *args: Any, **kwargs: Any) -> tuple[_M, bool]:
        raise _refuse(self.model, "QuerySet.update_or_create()")

    def delete(self) -> tuple[int, dict[str, int]]:
        if purge_allowed.get() != self.db:
            raise _refuse(self.model, "QuerySet.delete()")
        return super().delete()

    delete.queryset_only = True  # type: ignore[attr-defined]


class AppendOnlyModel(models.Model):
    """Abstract base: an instance can be inserted once and never changed or deleted."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise _refuse(type(self), "save() of an existing row")
        if self._record_insert(kwargs.get("using")):
            return
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def _record_insert(self, using: str | None) -> bool:
        """Insert through the recording path instead of as given (True), or not (False)."""
        return False

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if purge_allowed.get() != self._state.db:
            raise _refuse(type(self), "delete()")
        return super().delete(*args, **kwargs)


class FrameworkChoice(models.TextChoices):
    """Common values of :attr:`ModelVersion.framework` (any other string is accepted too)."""

    SKLEARN = "sklearn"
    XGBOOST = "xgboost"
    LIGHTGBM = "lightgbm"
    OTHER = "other"


class ActorTypeChoice(models.TextChoices):
    """The kinds of :class:`RequestingActor`."""

    USER = "user"
    SERVICE = "service"
    API_KEY = "api_key"
    JOB = "job"
    OTHER = "other"


class PredictionStatus(models.TextChoices):
    """How a prediction attempt ended."""

    SUCCESS = "success"
    FAILED = "failed"
    PARTIAL = "partial"


class ExplanationStatus(models.TextChoices):
    """How the generation of an explanation ended (``PredictionStatus`` values, and pending)."""

    SUCCESS = "success"
    FAILED = "failed"
    PARTIAL = "partial"
    PENDING = "pending"


class ModelVersion(models.Model):
    """A deployed model: logical name + version, with optional build provenance.

    A registry row, not an audit row: provenance may be added after the first prediction
    (:func:`ml_audit.services.register_model_version`).
    """

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    model_name = models.CharField(max_length=255)
    version = models.CharField(max_length=records.MAX_MODEL_VERSION)
    framework = models.CharField(max_length=100, blank=True, default="")
    build_id = models.CharField(max_length=255, blank=True, default="")
    commit_hash = models.CharField(max_length=255, blank=True, default="")
    config_snapshot = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("model_name", "version")
        constraints = [
            models.UniqueConstraint(
                fields=("model_name", "version"), name="ml_audit_model_name_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_name}@{self.version}"


class RequestingActor(models.Model):
    """Who asked: a user, service, API key or job, optionally within a tenant.

    One row per identity ``(actor_type, actor_id, tenant_id)``; an empty ``tenant_id`` means
    "no tenant" (an empty string, not NULL, so the unique constraint covers it). Per-request
    details (IP, user agent, auth context) live on each ``PredictionEvent``.
    """

    ActorType = ActorTypeChoice

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    actor_type = models.CharField(max_length=32, choices=ActorTypeChoice.choices)
    actor_id = models.CharField(max_length=records.MAX_ACTOR_ID)
    tenant_id = models.CharField(max_length=records.MAX_TENANT_ID, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("actor_type", "actor_id")
        constraints = [
            models.UniqueConstraint(
                fields=("actor_type", "actor_id", "tenant_id"), name="ml_audit_actor_identity"
            )
        ]

    def __str__(self) -> str:
        tenant = f" @ {self.tenant_id}" if self.tenant_id else ""
        return f"{self.actor_type}:{self.actor_id}{tenant}"


class PredictionEvent(AppendOnlyModel):
    """One prediction call, as it was: redacted inputs, output, context and a content hash."""

    Status = PredictionStatus

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    prediction_id = models.CharField(max_length=records.MAX_PREDICTION_ID, unique=True)
    timestamp = models.DateTimeField()
    trace_id = models.CharField(max_length=32, blank=True, default="")
    span_id = models.CharField(max_length=16, blank=True, default="")
    parent_span_id = models.CharField(max_length=16, blank=True, default="")
    correlation_id = models.CharField(max_length=records.MAX_CORRELATION_ID, blank=True, default="")
    environment = models.CharField(max_length=records.MAX_ENVIRONMENT, blank=True, default="")
    # The (model, timestamp) index below serves lookups by model; no separate FK index.
    model = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="predictions", db_index=False
    )
    actor = models.ForeignKey(
        RequestingActor,
        on_delete=models.PROTECT,
        related_name="predictions",
        null=True,
        blank=True,
    )
    tenant_id = models.CharField(max_length=records.MAX_TENANT_ID, blank=True, default="")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True, default="")
    auth_context = models.JSONField(default=dict, blank=True)
    features = models.JSONField(default=dict)
    redaction = models.JSONField(default=dict)
    input_fingerprint = models.CharField(max_length=64)
    output = models.JSONField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    decision_outcome = models.CharField(
        max_length=records.MAX_DECISION_OUTCOME, blank=True, default=""
    )
    status = models.CharField(
        max_length=16, choices=PredictionStatus.choices, default=PredictionStatus.SUCCESS
    )
    error_type = models.CharField(max_length=records.MAX_ERROR_TYPE, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    latency_ms = models.FloatField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    # Whom the prediction is about, pseudonymously (ml_audit.subjects): "" when not named.
    subject_ref = models.CharField(max_length=64, blank=True, default="")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("-timestamp", "-id")
        get_latest_by = "timestamp"
        indexes = [
            # Keyset pagination and time-window scans of the whole table.
            models.Index(fields=("timestamp", "id"), name="ml_audit_pred_ts_id"),
            # The most common filter: one model (version) over a time window.
            models.Index(fields=("model", "timestamp"), name="ml_audit_pred_model_ts"),
            # Tenant scoping of every read.
            models.Index(fields=("tenant_id", "timestamp"), name="ml_audit_pred_tenant_ts"),
            # "Every prediction of this trace"; most rows have one, so skip the empty ones.
            models.Index(
                fields=("trace_id",), name="ml_audit_pred_trace", condition=~Q(trace_id="")
            ),
            # "Every decision about this subject"; partial like the trace index.
            models.Index(
                fields=("subject_ref", "timestamp"),
                name="ml_audit_pred_subject",
                condition=~Q(subject_ref=""),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__isnull=True)
                | (Q(confidence__gte=0) & Q(confidence__lte=1)),
                name="ml_audit_pred_confidence_unit",
            ),
            models.CheckConstraint(
                condition=Q(latency_ms__isnull=True) | Q(latency_ms__gte=0),
                name="ml_audit_pred_latency_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(status__in=records.PREDICTION_STATUSES),
                name="ml_audit_pred_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prediction_id} ({self.model_id})"

    def _record_insert(self, using: str | None) -> bool:
        # ORM inserts (0.2.0's API) are recorded like any call: redacted, hashed, one writer.
        # The one place where the models room calls up into services: see ARCHITECTURE.md.
        from ml_audit.services.instances import record_prediction_instance

        record_prediction_instance(self, using)
        return True

    @property
    def explanation(self) -> Explanation | None:
        """The current explanation (highest revision), or ``None``.

        Uses prefetched ``explanations`` when available.
        """
        cache = getattr(self, "_prefetched_objects_cache", {})
        if "explanations" in cache:
            revisions = list(cache["explanations"])
            return max(revisions, key=lambda e: e.revision) if revisions else None
        return self.explanations.order_by("-revision").first()

    @property
    def has_explanation(self) -> bool:
        return self.explanation is not None


class Explanation(AppendOnlyModel):
    """One revision of the explanation of a prediction.

    The current explanation is the highest ``revision``; earlier revisions stay queryable as
    history. Rows are append-only like predictions.
    """

    Status = ExplanationStatus

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    prediction = models.ForeignKey(
        PredictionEvent, on_delete=models.PROTECT, related_name="explanations", db_index=False
    )
    revision = models.PositiveIntegerField()
    method = models.CharField(max_length=64)
    method_version = models.CharField(max_length=64, blank=True, default="")
    payload = models.JSONField(default=dict)
    summary_text = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=16, choices=ExplanationStatus.choices, default=ExplanationStatus.SUCCESS
    )
    generated_at = models.DateTimeField()
    created_at = models.DateTimeField()
    content_hash = models.CharField(max_length=64)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("prediction", "revision")
        constraints = [
            # Also the index for "explanations of this prediction".
            models.UniqueConstraint(
                fields=("prediction", "revision"), name="ml_audit_expl_prediction_revision"
            ),
            models.CheckConstraint(condition=Q(revision__gte=1), name="ml_audit_expl_revision"),
        ]

    def __str__(self) -> str:
        return f"{self.method} r{self.revision} for {self.prediction_id}"

    def _record_insert(self, using: str | None) -> bool:
        from ml_audit.services.instances import record_explanation_instance

        record_explanation_instance(self, using)
        return True


class AccessLog(AppendOnlyModel):
    """One read of the audit trail, through the REST API or the admin: who read which
    predictions, when, from where.

    The "audit of the audit" (HIPAA 164.312(b)): written (:mod:`ml_audit.api.access`) for every
    request that reaches an API view, refused ones and server errors included (``returned_ids``
    is then empty), and for every admin change list or change view of predictions and
    explanations, unless ``ML_AUDIT['API_ACCESS_LOG']`` is False. Append-only like predictions.
    """

    id = models.UUIDField(primary_key=True, default=records.uuid7, editable=False)
    accessed_at = models.DateTimeField()
    # str(request.user.pk); "" for an anonymous request.
    user_id = models.CharField(max_length=255, blank=True, default="")
    username = models.CharField(max_length=150, blank=True, default="")
    # "predictions-list", "predictions-detail", "traces-detail", "models-list", "models-detail",
    # "api-root", "not-found" (a path under the API that matches no endpoint); from the admin
    # "admin-predictions-list", "admin-prediction-detail", "admin-explanations-list",
    # "admin-explanation-detail".
    endpoint = models.CharField(max_length=64)
    method = models.CharField(max_length=16)
    path = models.TextField()
    # The query parameters, each name mapped to the list of its values.
    query = models.JSONField(default=dict, blank=True)
    status_code = models.PositiveSmallIntegerField()
    # UUIDs of the predictions in the response, in response order; [] for models and refusals.
    returned_ids = models.JSONField(default=list, blank=True)
    result_count = models.PositiveIntegerField(default=0)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    # The tenants the request was scoped to (sorted); None when unscoped or not resolved.
    tenant_scope = models.JSONField(null=True, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("-accessed_at", "-id")
        get_latest_by = "accessed_at"
        indexes = [
            models.Index(fields=("accessed_at",), name="ml_audit_access_at"),
            models.Index(fields=("user_id", "accessed_at"), name="ml_audit_access_user_at"),
        ]

    def __str__(self) -> str:
        who = self.username or self.user_id or "anonymous"
        return f"{who} {self.method} {self.endpoint} -> {self.status_code}"


class IngestCredential(models.Model):
    """A token with which one service sends audit spans to the OTLP ingest endpoint.

    See :mod:`ml_audit.ingest`. ``service_name`` becomes the actor (type ``service``) of every
    prediction the token sends; ``allowed_tenants`` bounds the tenants it may write (``""``
    in the list: predictions without a tenant). Only the SHA-256 of the token is stored: the
    clear token is shown once, when it is issued (admin or ``manage.py
    ml_audit_ingest_token create``). A revoked credential authenticates nothing; rows are
    kept, so that the history of who could write stays readable.
    """

    service_name = models.CharField(max_length=records.MAX_ACTOR_ID)
    allowed_tenants = models.JSONField(default=list, blank=True)
    description = models.CharField(max_length=255, blank=True, default="")
    # SHA-256 (hex) of the token; the token itself is never stored.
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The token's first characters, to tell tokens apart (not enough to use one).
    token_prefix = models.CharField(max_length=16, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("service_name", "-created_at")

    def __str__(self) -> str:
        state = " (revoked)" if self.revoked_at is not None else ""
        return f"{self.service_name} {self.token_prefix}…{state}"


# The seals (tamper evidence) live in their own module; imported here so Django finds them.
from ml_audit.seal_models import Seal, SealMember  # noqa: E402

# isort: split
# Legal holds and purge records (retention) live in their own module too.
from ml_audit.retention_models import LegalHold, PurgedRow, PurgeRecord  # noqa: E402, F401

# isort: split
# Data subjects, and the human side of a decision (reviews, outcomes, reason codes).
from ml_audit.decision_models import Outcome, ReasonCodes, Review, ReviewAction  # noqa: E402
from ml_audit.subject_models import SubjectErasure, SubjectKey  # noqa: E402
