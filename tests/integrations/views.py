"""DRF views decorated with @audited_prediction, for tests/integrations/test_drf.py."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, viewsets
from rest_framework.decorators import api_view
from rest_framework.exceptions import APIException
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from ml_audit.integrations.drf import audited_prediction

#: What the last call of a view saw as request.ml_audit (tests read it).
SEEN: dict[str, Any] = {}


class ApplicantSerializer(serializers.Serializer[Any]):
    income = serializers.IntegerField(min_value=0)
    email = serializers.EmailField()
    mode = serializers.ChoiceField(choices=["ok", "crash", "refuse", "conflict", "bad-output"])


class Refused(APIException):
    status_code = 422
    default_detail = "cannot score this applicant"
    default_code = "refused"


def explain(features: Any, output: Any, prediction: Any) -> dict[str, Any] | None:
    if output.get("score", 0) < 0.1:
        return None
    return {
        "method": "reason_codes",
        "payload": {"feature_importances": {"income": -0.7}},
        "summary_text": "income",
    }


def score(data: Any) -> dict[str, Any]:
    mode = data.get("mode", "ok")
    if mode == "crash":
        # The message quotes the input: it must not reach the audit trail.
        raise ValueError(f"model crashed on {data.get('email')} income={data.get('income')}")
    if mode == "refuse":
        raise Refused()
    s = 0.05 if int(data.get("income", 0)) > 100_000 else 0.9
    out = {"score": s, "label": "flagged" if s > 0.5 else "clear", "reason": f"r{int(s * 10)}"}
    if mode == "bad-output":
        out["score"] = "very high"
    return out


class ScoreView(GenericAPIView[Any]):
    serializer_class = ApplicantSerializer

    @audited_prediction(
        model_name="fraud",
        model_version="2.0",
        decision_field="label",
        confidence_field="score",
        explanation_builder=explain,
    )
    def post(self, request: Request) -> Response:
        SEEN["context"] = request.ml_audit  # type: ignore[attr-defined]
        data = request.ml_audit.serializer.validated_data  # type: ignore[attr-defined]
        if data["mode"] == "conflict":
            return Response({"detail": "busy"}, status=409)
        return Response(score(data))


@api_view(["GET", "POST"])
@audited_prediction(
    model_name="fraud-fn",
    model_version="1",
    decision_field="label",
    decision_outcome_field="reason",
    confidence_field="score",
)
def score_function(request: Request) -> Any:
    SEEN["context"] = request.ml_audit  # type: ignore[attr-defined]
    return score(request.ml_audit.features)  # type: ignore[attr-defined]  # a plain dict


@api_view(["POST"])
@audited_prediction(
    model_name="fraud-features",
    model_version="1",
    features=lambda request, **kwargs: {"income": request.data["income"], "kind": kwargs["kind"]},
    on_audit_failure="serve",
)
def score_with_features(request: Request, kind: str) -> Response:
    return Response([1, 2, 3])  # not a mapping: the id travels in the header only


class ScoreViewSet(viewsets.GenericViewSet[Any]):
    """A viewset action; its serializer comes from get_serializer_class() per action."""

    def get_serializer_class(self) -> type[serializers.Serializer[Any]]:
        return ApplicantSerializer

    @audited_prediction(model_name="fraud-viewset", model_version="1", decision_field="label")
    def create(self, request: Request) -> Response:
        return Response(score(request.ml_audit.serializer.validated_data))  # type: ignore[attr-defined]


class NoSerializerView(GenericAPIView[Any]):
    """A generic view without serializer_class: the request data are the features."""

    @audited_prediction(model_name="fraud-plain", model_version="1")
    def post(self, request: Request) -> Response:
        return Response({"ok": True})


#: The ``prediction`` the 0.2.0-style builder was called with (tests read it).
BUILT_FOR: list[Any] = []


def explain_0_2_0(features: Any, output: Any, prediction_event: Any) -> dict[str, Any]:
    """0.2.0's explanation_builder contract: ``{"payload": ..., "summary": ...}``."""
    BUILT_FOR.append(prediction_event)
    return {"payload": {"amount": 0.7}, "summary": f"amount drove {output['is_fraud']}"}


class LegacyFraudView(GenericAPIView[Any]):
    """Decorated exactly as 0.2.0's README shows: positional arguments, a dict returned."""

    @audited_prediction(
        "fraud_model", "1.0", "prod", "is_fraud", "fraud_probability", explain_0_2_0
    )
    def post(self, request: Request) -> Any:
        return {"is_fraud": True, "fraud_probability": 0.9}
