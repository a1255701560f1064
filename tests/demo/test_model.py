"""The demo's model: deterministic, and its explanations are exact."""

from __future__ import annotations

import math

import pytest
from demo_site import model


@pytest.fixture(scope="module")
def credit() -> model.CreditModel:
    return model.trained_model()


def applicant(i: int) -> dict[str, float]:
    X, _ = model.synthetic_applicants(50, seed=99)
    return dict(zip(model.FEATURES, map(float, X[i]), strict=True))


def test_training_is_deterministic() -> None:
    a = model.trained_model.__wrapped__()
    b = model.trained_model.__wrapped__()
    assert (a.classifier.coef_ == b.classifier.coef_).all()
    # And it learned the data's signs: late payments raise the risk, history lowers it.
    coef = dict(zip(model.FEATURES, a.classifier.coef_[0], strict=True))
    assert coef["late_payments_12m"] > 0 > coef["credit_history_months"]


@pytest.mark.parametrize("i", range(0, 50, 7))
def test_contributions_add_up_to_the_log_odds(credit: model.CreditModel, i: int) -> None:
    features = applicant(i)
    explained = credit.classifier.intercept_[0] + sum(credit.contributions(features).values())
    assert explained == pytest.approx(credit.log_odds(features), abs=1e-9)
    p = credit.score(features)["default_probability"]
    assert math.log(p / (1 - p)) == pytest.approx(credit.log_odds(features), abs=1e-4)


def test_the_closed_form_equals_shap_linear_explainer(credit: model.CreditModel) -> None:
    pytest.importorskip("shap", reason="the shap package is part of the dev extra")
    for i in range(10):
        features = applicant(i)
        ours, theirs = credit.contributions(features), credit.shap_contributions(features)
        assert ours == pytest.approx(theirs, abs=1e-9)


def test_decisions_follow_the_thresholds(credit: model.CreditModel) -> None:
    for i in range(50):
        out = credit.score(applicant(i))
        p = out["default_probability"]
        expected = "decline" if p > 0.5 else "review" if p > 0.2 else "approve"
        assert out["decision"] == expected
        assert out["confidence"] == pytest.approx(max(p, 1 - p), abs=1e-6)


def test_explanation_is_what_attach_explanation_takes(credit: model.CreditModel) -> None:
    explanation = credit.explain(applicant(3))
    assert explanation["method"] == "shap"
    assert set(explanation["payload"]["shap_values"]) == set(model.FEATURES)
    assert explanation["summary_text"].startswith("Most influential: ")


def test_garbage_input_is_refused(credit: model.CreditModel) -> None:
    features = applicant(0)
    with pytest.raises(ValueError, match="finite"):
        credit.score({**features, "age": float("nan")})
    with pytest.raises(KeyError):
        credit.score({k: v for k, v in features.items() if k != "age"})
