"""JSON shapes of the API: a prediction with its model, actor and current explanation, and
what happened to the decision afterwards: its reviews, its effective outcome and its observed
outcomes.

Serializers read only what is loaded: ``model`` and ``actor`` through ``select_related``,
explanations (with ``reason_codes`` through ``select_related``), reviews and outcomes through one
prefetch each (the current explanation is the highest revision, ``explanation_revisions`` is
how many there are). Nothing here issues a query per row when they are loaded; without them,
each related manager queries in its model's default order, which is the order shown. The views
read the same data as rows instead (:mod:`ml_audit.api.rows`, held equal to these by
``tests/api/test_fast_paths.py``).
"""

from __future__ import annotations

from typing import Any, TypedDict

from rest_framework import serializers

from ml_audit.api.access import REQUEST_CONTEXT_FIELDS
from ml_audit.conf import trace_url
from ml_audit.decision_models import Outcome, Review, ReviewAction
from ml_audit.models import Explanation, ModelVersion, PredictionEvent, RequestingActor

__all__ = [
    "REQUEST_CONTEXT_FIELDS",
    "CurrentExplanationSerializer",
    "ExplanationSerializer",
    "ModelVersionSerializer",
    "OutcomeSerializer",
    "PredictionEventSerializer",
    "ReviewSerializer",
    "trace_url",
]


class ModelVersionSummarySerializer(serializers.ModelSerializer[ModelVersion]):
    class Meta:
        model = ModelVersion
        fields = ("model_name", "version", "framework")


class ModelVersionSerializer(serializers.ModelSerializer[ModelVersion]):
    class Meta:
        model = ModelVersion
        fields = (
            "id",
            "model_name",
            "version",
            "framework",
            "build_id",
            "commit_hash",
            "config_snapshot",
            "is_active",
            "created_at",
            "updated_at",
        )


class RequestingActorSerializer(serializers.ModelSerializer[RequestingActor]):
    type = serializers.CharField(source="actor_type")
    id = serializers.CharField(source="actor_id")
    tenant = serializers.CharField(source="tenant_id")

    class Meta:
        model = RequestingActor
        fields = ("type", "id", "tenant")


class ExplanationSerializer(serializers.ModelSerializer[Explanation]):
    class Meta:
        model = Explanation
        fields: tuple[str, ...] = (
            "method",
            "method_version",
            "payload",
            "summary_text",
            "status",
            "generated_at",
            "revision",
        )


class ReasonCode(TypedDict):
    """One reason code: the code, the text a subject reads, the feature it comes from, the
    direction of its contribution (+ or -) and the contribution."""

    code: str
    text: str
    feature: str
    direction: str
    contribution: float


class CurrentExplanationSerializer(ExplanationSerializer):
    """A prediction's current explanation, with the reason codes derived from that revision:
    the ``codes`` of its :class:`~ml_audit.decision_models.ReasonCodes`, each
    ``{"code", "text", "feature", "direction", "contribution"}`` in order of weight, or
    ``None`` when none were derived from this revision."""

    reason_codes = serializers.SerializerMethodField()

    class Meta(ExplanationSerializer.Meta):
        fields = (*ExplanationSerializer.Meta.fields, "reason_codes")

    def get_reason_codes(self, obj: Explanation) -> list[ReasonCode] | None:
        # A reverse one-to-one: loaded by select_related("reason_codes"), else one query.
        codes = getattr(obj, "reason_codes", None)  # its DoesNotExist is an AttributeError
        return None if codes is None else codes.codes


class ReviewSerializer(serializers.ModelSerializer[Review]):
    """One review of a prediction: who confirmed, overrode, escalated or contested it."""

    class Meta:
        model = Review
        fields: tuple[str, ...] = (
            "id",
            "action",
            "final_outcome",
            "reviewer_type",
            "reviewer_id",
            "reason",
            "comment",
            "created_at",
        )


class OutcomeSerializer(serializers.ModelSerializer[Outcome]):
    """One observed outcome of a prediction (the ground truth, from ``source``)."""

    class Meta:
        model = Outcome
        fields = ("value", "observed_at", "source", "recorded_at")


class CurrentOutcomeSerializer(OutcomeSerializer):
    # The latest of a prediction's outcomes, None without any: the same shape, and the same
    # schema component, as each of ``outcomes`` (no docstring: the component keeps
    # OutcomeSerializer's description).

    class Meta(OutcomeSerializer.Meta):
        ref_name = "Outcome"

    def get_attribute(self, instance: Any) -> Outcome | None:
        latest = _outcomes(instance)
        return latest[0] if latest else None


def _outcomes(obj: PredictionEvent) -> list[Outcome]:
    """Latest first: prefetched (in that order) or queried in ``Outcome``'s default order."""
    return list(obj.outcomes.all())


class PredictionEventSerializer(serializers.ModelSerializer[PredictionEvent]):
    """A prediction, its model, actor and current explanation, a link to its trace, and what
    happened to the decision afterwards: ``reviews`` (latest first), ``effective_outcome``
    (the latest override's ``final_outcome``, else the model's ``decision_outcome``),
    ``outcomes`` (latest first) and ``outcome`` (the latest, or ``None``).

    ``client_ip``, ``user_agent`` and ``auth_context`` are left out unless the context says
    ``show_request_context`` (see :mod:`ml_audit.api.permissions`).
    """

    model = ModelVersionSummarySerializer(read_only=True)
    actor = RequestingActorSerializer(read_only=True, allow_null=True)
    # PredictionEvent.explanation reads the views' prefetched revisions: no query per row, and
    # one child serializer for the whole page rather than one per row.
    explanation = CurrentExplanationSerializer(read_only=True, allow_null=True)
    explanation_revisions = serializers.SerializerMethodField()
    trace_url = serializers.SerializerMethodField()
    effective_outcome = serializers.SerializerMethodField()
    reviews = ReviewSerializer(many=True, read_only=True)
    outcome = CurrentOutcomeSerializer(read_only=True, allow_null=True)
    outcomes = OutcomeSerializer(many=True, read_only=True)

    class Meta:
        model = PredictionEvent
        fields = (
            "id",
            "prediction_id",
            "timestamp",
            "trace_id",
            "span_id",
            "correlation_id",
            "trace_url",
            "environment",
            "model",
            "actor",
            "tenant_id",
            "subject_ref",
            "features",
            "redaction",
            "output",
            "confidence",
            "decision_outcome",
            "effective_outcome",
            "status",
            "error_type",
            "error_message",
            "latency_ms",
            "metadata",
            "content_hash",
            "input_fingerprint",
            "explanation",
            "explanation_revisions",
            "reviews",
            "outcome",
            "outcomes",
            *REQUEST_CONTEXT_FIELDS,
        )
        read_only_fields = fields

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        if not self.context.get("show_request_context", False):
            for name in REQUEST_CONTEXT_FIELDS:
                fields.pop(name, None)
        return fields

    @staticmethod
    def _revisions(obj: PredictionEvent) -> list[Explanation]:
        # Prefetched by the views, ordered by revision; fall back to a query elsewhere.
        cache = getattr(obj, "_prefetched_objects_cache", {})
        if "explanations" in cache:
            return list(cache["explanations"])
        return list(obj.explanations.order_by("revision"))

    def get_explanation_revisions(self, obj: PredictionEvent) -> int:
        return len(self._revisions(obj))

    def get_trace_url(self, obj: PredictionEvent) -> str | None:
        return trace_url(obj.trace_id)

    def get_effective_outcome(self, obj: PredictionEvent) -> str:
        # Reviews come latest first (prefetched in that order, or Review's default order).
        for review in obj.reviews.all():
            if review.action == ReviewAction.OVERRIDE:
                return review.final_outcome
        return obj.decision_outcome
