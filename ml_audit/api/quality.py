"""``GET models/{uuid}/quality/``: the quality of one model version by ISO week.

The body is :meth:`ml_audit.outcomes.quality.QualityReport.as_json` (described by
:class:`QualitySerializer` for the OpenAPI document): the model version, the total over all
weeks, and the weeks, oldest first. Read-only and behind the API's permissions like every
endpoint (:class:`~ml_audit.api.views._AuditAPIView`: 405 before authentication, the
configured permission classes, 400 for any query parameter), computed over the predictions of
the tenants the request may read (a model version with no visible prediction is a 404) and
access-logged as ``models-quality`` (no prediction ids: it returns aggregates; its
``result_count`` is the number of weeks).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from ml_audit import store
from ml_audit.api import access
from ml_audit.api.views import _AuditAPIView
from ml_audit.models import ModelVersion

__all__ = ["ModelQualityView", "QualitySerializer", "WeekQualitySerializer"]


class WeekQualitySerializer(serializers.Serializer[Any]):
    """One ISO week (``week`` is ``""`` and ``week_start`` null in the total)."""

    week = serializers.CharField(help_text="ISO week of the predictions, e.g. 2026-W09.")
    week_start = serializers.DateField(allow_null=True, help_text="Its Monday (UTC).")
    predictions = serializers.IntegerField(help_text="Predictions of the version that week.")
    with_outcome = serializers.IntegerField(help_text="Of those, with an outcome.")
    compared = serializers.IntegerField(
        help_text="With a text (or true/false) outcome and a decision_outcome to compare."
    )
    correct = serializers.IntegerField(help_text="Of those, decision_outcome equals the outcome.")
    accuracy = serializers.FloatField(allow_null=True, help_text="correct / compared.")
    numeric = serializers.IntegerField(help_text="With a numeric outcome and a numeric output.")
    mae = serializers.FloatField(
        allow_null=True, help_text="Mean absolute error of the output against those outcomes."
    )
    overridden = serializers.IntegerField(help_text="Predictions with an override review.")
    override_rate = serializers.FloatField(allow_null=True, help_text="overridden / predictions.")
    overrides_compared = serializers.IntegerField(
        help_text="Overridden predictions with a text (or true/false) outcome."
    )
    overrides_right = serializers.IntegerField(
        help_text="Of those, the latest override's final_outcome equals the outcome."
    )
    override_accuracy = serializers.FloatField(
        allow_null=True, help_text="overrides_right / overrides_compared."
    )
    effective_compared = serializers.IntegerField(
        help_text="With a text outcome and a decision that stood (override's, else model's)."
    )
    effective_correct = serializers.IntegerField(
        help_text="Of those, the decision that stood equals the outcome."
    )
    effective_accuracy = serializers.FloatField(
        allow_null=True, help_text="effective_correct / effective_compared."
    )


class _ModelSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    model_name = serializers.CharField()
    version = serializers.CharField()


class QualitySerializer(serializers.Serializer[Any]):
    """The body of ``GET models/{uuid}/quality/``."""

    model = _ModelSerializer()
    total = WeekQualitySerializer()
    weeks = WeekQualitySerializer(many=True)


class ModelQualityView(_AuditAPIView, GenericAPIView[ModelVersion]):
    """The quality of one model version (``GET models/{uuid}/quality/``): for each ISO week
    (UTC) of its predictions, oldest first, and in total, how many predictions it made and how
    many have an outcome; how often its ``decision_outcome`` matched a text (or true/false)
    outcome (``accuracy``); the mean absolute error of a numeric ``output`` against numeric
    outcomes (``mae``); how many predictions were overridden by a reviewer (``override_rate``,
    of all predictions) and how often the latest override's ``final_outcome`` matched the
    outcome (``override_accuracy``). The current outcome of a prediction is the one observed
    last. Counts cover the predictions of the tenants you may read.
    """

    serializer_class = QualitySerializer
    access_log_resource = "models"
    access_log_predictions = False
    pagination_class = None

    def access_log_endpoint(self) -> str:
        return "models-quality"

    def access_log_rows(self, data: Any) -> list[Any]:
        return list(data.get("weeks", [])) if isinstance(data, dict) else []

    def get_queryset(self) -> Any:
        queryset = ModelVersion.objects.using(store.resolve_alias())
        return access.visible_model_versions(self.request, queryset)

    def get(self, request: Request, pk: str) -> Response:
        from ml_audit.outcomes.quality import model_quality

        try:
            model = self.get_queryset().filter(pk=pk).first()
        except (TypeError, ValueError, DjangoValidationError):  # as DRF's get_object_or_404
            model = None
        if model is None:
            raise Http404("No model version matches the given query.")
        report = model_quality(model, tenants=access.allowed_tenants(request))
        return Response(report.as_json())
