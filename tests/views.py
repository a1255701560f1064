from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from ml_audit.actors import actor_from_request
from ml_audit.services import record_prediction_event


def predict(request: HttpRequest) -> JsonResponse:
    amount = float(request.GET.get("amount", "0"))
    score = min(1.0, amount / 100)
    event = record_prediction_event(
        "view_model",
        "1",
        {"amount": amount},
        {"score": score},
        confidence=score,
        actor=actor_from_request(request),
    )
    return JsonResponse({"prediction_id": event.prediction_id})
