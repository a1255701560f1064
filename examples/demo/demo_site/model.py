"""A real, small credit-risk model: logistic regression trained at start-up on synthetic data.

The data set is generated from a fixed seed (no download), so every run trains the same model
and ``MODEL_VERSION`` names it. Explanations are exact per-feature contributions in log-odds:
for a linear model on standardised inputs, ``coef_i * (x_i - mean_i) / scale_i`` with the
training set as background is exactly the (interventional) SHAP value of feature ``i``, and
the contributions add up with the intercept to the model's log-odds. When the ``shap`` package
is installed, ``shap.LinearExplainer`` computes them instead (the tests check both agree).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

MODEL_NAME = "credit_risk"
MODEL_VERSION = "logreg-1.0.0"
SEED = 20261128

#: The model's inputs, in order, with their units.
FEATURES = {
    "income_k": "yearly income, thousands",
    "debt_to_income": "monthly debt / monthly income",
    "credit_history_months": "age of the oldest credit line",
    "late_payments_12m": "late payments in the last 12 months",
    "loan_amount_k": "amount asked for, thousands",
    "age": "years",
}

#: Probability of default above which an application is declined / sent to review.
DECLINE_ABOVE = 0.5
REVIEW_ABOVE = 0.2


def synthetic_applicants(count: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``count`` applicants (rows in ``FEATURES`` order) and whether each defaulted."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(mean=3.9, sigma=0.45, size=count)  # about 50k median
    dti = np.clip(rng.normal(0.32, 0.12, size=count), 0.0, 1.5)
    history = np.clip(rng.gamma(4.0, 24.0, size=count), 0, 600)
    late = rng.poisson(0.6, size=count).astype(float)
    loan = np.clip(rng.lognormal(mean=2.6, sigma=0.7, size=count), 1, 500)
    age = np.clip(rng.normal(41, 12, size=count), 18, 90)
    logit = (
        -2.2
        + 4.0 * (dti - 0.32)
        + 0.9 * late
        - 0.012 * (history - 96)
        + 0.9 * np.log(loan / income)
        - 0.01 * (age - 41)
    )
    defaulted = rng.random(count) < 1.0 / (1.0 + np.exp(-logit))
    X = np.column_stack([income, dti, history, late, loan, age])
    return X, defaulted.astype(int)


def row(features: Mapping[str, Any]) -> np.ndarray:
    """One applicant's inputs as the model's 1 x n matrix (missing or garbage: ValueError)."""
    values = []
    for name in FEATURES:
        value = float(features[name])
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number")
        values.append(value)
    return np.array([values])


@dataclass(frozen=True)
class CreditModel:
    pipeline: Pipeline

    @property
    def scaler(self) -> StandardScaler:
        return self.pipeline[0]

    @property
    def classifier(self) -> LogisticRegression:
        return self.pipeline[-1]

    def score(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """The decision for one applicant: ``decision``, ``default_probability``, ``confidence``."""
        probability = float(self.pipeline.predict_proba(row(features))[0, 1])
        if probability > DECLINE_ABOVE:
            decision = "decline"
        elif probability > REVIEW_ABOVE:
            decision = "review"
        else:
            decision = "approve"
        return {
            "decision": decision,
            "default_probability": round(probability, 6),
            # How sure the model is of the side of 0.5 it is on.
            "confidence": round(max(probability, 1.0 - probability), 6),
        }

    def log_odds(self, features: Mapping[str, Any]) -> float:
        return float(self.pipeline.decision_function(row(features))[0])

    def contributions(self, features: Mapping[str, Any]) -> dict[str, float]:
        """Exact per-feature contributions to the log-odds (linear SHAP, training background)."""
        z = (row(features)[0] - self.scaler.mean_) / self.scaler.scale_
        values = self.classifier.coef_[0] * z
        return {name: float(value) for name, value in zip(FEATURES, values, strict=True)}

    def shap_contributions(self, features: Mapping[str, Any]) -> dict[str, float]:
        """The same numbers from ``shap.LinearExplainer`` (needs the ``shap`` package)."""
        import shap

        background = np.zeros((1, len(FEATURES)))  # standardised training mean
        explainer = shap.LinearExplainer(self.classifier, background)
        z = self.scaler.transform(row(features))
        values = explainer.shap_values(z)[0]
        return {name: float(value) for name, value in zip(FEATURES, values, strict=True)}

    def explain(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments of ``attach_explanation`` for one applicant."""
        try:
            values = self.shap_contributions(features)
            algorithm = "shap.LinearExplainer"
        except ImportError:
            values = self.contributions(features)
            algorithm = "exact linear SHAP: coef * standardised deviation from the mean"
        ranked = sorted(values.items(), key=lambda item: abs(item[1]), reverse=True)
        top = ", ".join(
            f"{name} {'raised' if value > 0 else 'lowered'} the risk" for name, value in ranked[:2]
        )
        return {
            "method": "shap",
            "payload": {
                "shap_values": {name: round(value, 6) for name, value in values.items()},
                "base_value": round(float(self.classifier.intercept_[0]), 6),
                "output_space": "log-odds of default",
                "algorithm": algorithm,
            },
            "summary_text": f"Most influential: {top}.",
        }


@functools.cache
def trained_model(seed: int = SEED, count: int = 5000) -> CreditModel:
    """The model, trained once per process on the synthetic data set."""
    X, y = synthetic_applicants(count, seed)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(X, y)
    return CreditModel(pipeline)
