"""The demo's scoring endpoint: a DRF view, one decorator, and the model."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from demo_site.auth import actor_of
from demo_site.model import MODEL_NAME, MODEL_VERSION, trained_model
from ml_audit.integrations.drf import audited_prediction


class ApplicationSerializer(serializers.Serializer[Any]):
    # What the model uses.
    income_k = serializers.FloatField(min_value=0.0, max_value=100_000.0)
    debt_to_income = serializers.FloatField(min_value=0.0, max_value=10.0)
    credit_history_months = serializers.IntegerField(min_value=0, max_value=1200)
    late_payments_12m = serializers.IntegerField(min_value=0, max_value=365)
    loan_amount_k = serializers.FloatField(min_value=0.0, max_value=100_000.0)
    age = serializers.IntegerField(min_value=18, max_value=120)
    # What the application also carries, and the audit trail must not keep in clear. The
    # applicant id names the prediction's data subject (stored as a pseudonymous reference).
    applicant_id = serializers.RegexField(r"^[A-Z]{1,8}-[0-9]{1,12}$", max_length=24)
    full_name = serializers.CharField(max_length=200)
    email = serializers.EmailField()
    phone = serializers.CharField(max_length=40, required=False)
    notes = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class OutsideModelRange(APIException):
    status_code = 422
    default_detail = "The application is outside the range the model was validated on."
    default_code = "outside_model_range"


def explain(features: Any, output: Any, prediction: Any) -> dict[str, Any]:
    return trained_model().explain(features)


class ScoreView(GenericAPIView[Any]):
    """POST an application, get the decision and the id of its audit record."""

    serializer_class = ApplicationSerializer

    @audited_prediction(
        model_name=MODEL_NAME,
        model_version=MODEL_VERSION,
        decision_field="decision",
        confidence_field="confidence",
        explanation_builder=explain,
        actor=actor_of,
        subject_field="applicant_id",
    )
    def post(self, request: Request) -> Response:
        application = request.ml_audit.features  # type: ignore[attr-defined]
        if application["loan_amount_k"] > 20 * application["income_k"]:
            raise OutsideModelRange()
        return Response(trained_model().score(application))


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        format_html(
            "<!doctype html><title>ml_audit demo</title><h1>ml_audit demo</h1><ul>"
            '<li><a href="{}">Admin: recorded predictions</a></li>'
            '<li><a href="{}">REST API: predictions</a></li>'
            "<li>Score: POST {} with an X-Api-Key header</li></ul>",
            "/admin/ml_audit/predictionevent/",
            "/api/ml-audit/predictions/",
            "/api/score/",
        )
    )
