"""Recording predictions from Django REST framework views: explicitly, and with the decorator.

Copy what you need into your project. ``FraudScoreView`` does every step by hand, as the
recording API is meant to be used:

1. validate the request payload with a serializer;
2. call the model;
3. build the actor (who asked: user, tenant, client IP, user agent) from the request;
4. ``record_prediction_event`` (redacts, writes the span and the row, returns the row);
5. ``attach_explanation`` (here: reason codes from the model's per-feature terms);
6. answer with the prediction's id, which support staff and auditors can look up later.

``DecoratedFraudScoreView`` does the same in one decorator (``@audited_prediction``), which
also records failures and follows ``ML_AUDIT['ON_AUDIT_FAILURE']`` when the audit trail cannot
be written. Mount either one in your ``urls.py``::

    path("fraud/score/", FraudScoreView.as_view()),
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ml_audit.actors import actor_from_request
from ml_audit.integrations.drf import audited_prediction
from ml_audit.services import attach_explanation, record_prediction_event

MODEL_NAME = "fraud_detector"
MODEL_VERSION = "1.0.0"


class TransactionSerializer(serializers.Serializer[Any]):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"))
    merchant_country = serializers.CharField(max_length=2, min_length=2)
    account_age_days = serializers.IntegerField(min_value=0)
    # Present in the payload, masked in the audit trail by the default redaction rules.
    card_number = serializers.CharField(max_length=32)
    email = serializers.EmailField()


#: A stand-in for your model: a transparent linear score with per-feature terms.
WEIGHTS = {"amount": 0.00012, "foreign": 0.35, "new_account": 0.3}
HOME_COUNTRY = "GB"


def fraud_terms(features: dict[str, Any]) -> dict[str, float]:
    return {
        "amount": float(features["amount"]) * WEIGHTS["amount"],
        "foreign": WEIGHTS["foreign"] if features["merchant_country"] != HOME_COUNTRY else 0.0,
        "new_account": WEIGHTS["new_account"] if features["account_age_days"] < 30 else 0.0,
    }


def fraud_model(features: dict[str, Any]) -> float:
    return round(min(0.05 + sum(fraud_terms(features).values()), 0.99), 4)


class FraudScoreView(APIView):
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        serializer = TransactionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        features = dict(serializer.validated_data)

        started = time.perf_counter()
        score = fraud_model(features)
        latency_ms = (time.perf_counter() - started) * 1000
        output = {"score": score, "is_fraud": score > 0.8}

        prediction = record_prediction_event(
            model_name=MODEL_NAME,
            model_version=MODEL_VERSION,
            features=features,
            output=output,
            decision_outcome="flagged" if output["is_fraud"] else "clean",
            confidence=score,
            actor=actor_from_request(request),
            # A W3C trace id continues that trace; any other value is kept as a correlation id.
            trace_id=request.headers.get("X-Request-ID"),
            latency_ms=latency_ms,
        )

        terms = fraud_terms(features)
        attach_explanation(
            prediction=prediction,
            method="reason_codes",
            payload={"feature_importances": terms},
            summary_text=", ".join(name for name, value in terms.items() if value > 0),
        )
        return Response(
            {"prediction_id": prediction.prediction_id, "id": str(prediction.id), **output},
            status=status.HTTP_201_CREATED,
        )


def explain_fraud(features: Any, output: Any, prediction: Any) -> dict[str, Any]:
    return {"method": "reason_codes", "payload": {"feature_importances": fraud_terms(features)}}


class DecoratedFraudScoreView(APIView):
    permission_classes = [IsAuthenticated]

    @audited_prediction(
        model_name=MODEL_NAME,
        model_version=MODEL_VERSION,
        decision_field="decision",
        confidence_field="score",
        explanation_builder=explain_fraud,
        serializer_class=TransactionSerializer,
    )
    def post(self, request: Request) -> Response:
        features = request.ml_audit.features  # type: ignore[attr-defined]  # validated data
        score = fraud_model(features)
        return Response({"score": score, "decision": "flagged" if score > 0.8 else "clean"})
