"""examples/sample_drf_views.py works as its docstring says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from rest_framework.test import APIRequestFactory, force_authenticate

from ml_audit.models import PredictionEvent

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample_drf_views.py"
CARD = "4111 1111 1111 1111"
EMAIL = "payer@example.com"


@pytest.fixture(scope="module")
def sample() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sample_drf_views", SAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sample_drf_views"] = module
    spec.loader.exec_module(module)
    return module


def call(view: Any, user: Any, **data: Any) -> Any:
    request = APIRequestFactory().post("/fraud/score/", data, format="json")
    force_authenticate(request, user)
    return view.as_view()(request)


TRANSACTION = {
    "amount": "1500.00",
    "merchant_country": "FR",
    "account_age_days": 3,
    "card_number": CARD,
    "email": EMAIL,
}


@pytest.mark.parametrize("view_name", ["FraudScoreView", "DecoratedFraudScoreView"])
def test_sample_view_records_explains_and_answers_with_the_id(
    sample: ModuleType, django_user_model: Any, view_name: str
) -> None:
    user = django_user_model.objects.create_user("clerk")
    response = call(getattr(sample, view_name), user, **TRANSACTION)
    assert response.status_code in (200, 201)
    event = PredictionEvent.objects.get(prediction_id=response.data["prediction_id"])
    assert event.features["card_number"] == "*****"
    assert event.features["email"] == "*****"
    assert event.features["amount"] == "1500.00"  # Decimal kept exactly, as a string
    assert event.confidence == pytest.approx(0.05 + 1500 * 0.00012 + 0.35 + 0.3)
    assert event.decision_outcome == "flagged"
    assert event.actor is not None
    assert event.actor.actor_id == str(user.pk)
    assert event.explanation is not None
    assert event.explanation.payload["feature_importances"]["foreign"] == 0.35


def test_sample_view_refuses_invalid_payloads_without_recording(
    sample: ModuleType, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("clerk")
    response = call(sample.FraudScoreView, user, **{**TRANSACTION, "amount": "-1"})
    assert response.status_code == 400
    assert "amount" in response.data
    assert PredictionEvent.objects.count() == 0
