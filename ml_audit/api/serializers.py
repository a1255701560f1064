"""JSON shapes of the API: a prediction with its model, actor and current explanation.

Serializers read only what the views load: ``model`` and ``actor`` through ``select_related``,
explanations through one prefetch ordered by revision (the current explanation is the last,
``explanation_revisions`` is how many there are). Nothing here issues a query per row.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ml_audit.api.access import REQUEST_CONTEXT_FIELDS
from ml_audit.conf import trace_url
from ml_audit.models import Explanation, ModelVersion, PredictionEvent, RequestingActor

__all__ = [
    "REQUEST_CONTEXT_FIELDS",
    "ExplanationSerializer",
    "ModelVersionSerializer",
    "PredictionEventSerializer",
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
        fields = (
            "method",
            "method_version",
            "payload",
            "summary_text",
            "status",
            "generated_at",
            "revision",
        )


class PredictionEventSerializer(serializers.ModelSerializer[PredictionEvent]):
    """A prediction, its model, actor and current explanation, and a link to its trace.

    ``client_ip``, ``user_agent`` and ``auth_context`` are left out unless the context says
    ``show_request_context`` (see :mod:`ml_audit.api.permissions`).
    """

    model = ModelVersionSummarySerializer(read_only=True)
    actor = RequestingActorSerializer(read_only=True, allow_null=True)
    # PredictionEvent.explanation reads the views' prefetched revisions: no query per row, and
    # one child serializer for the whole page rather than one per row.
    explanation = ExplanationSerializer(read_only=True, allow_null=True)
    explanation_revisions = serializers.SerializerMethodField()
    trace_url = serializers.SerializerMethodField()

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
            "features",
            "redaction",
            "output",
            "confidence",
            "decision_outcome",
            "status",
            "error_type",
            "error_message",
            "latency_ms",
            "metadata",
            "content_hash",
            "input_fingerprint",
            "explanation",
            "explanation_revisions",
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
