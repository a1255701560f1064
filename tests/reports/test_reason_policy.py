"""ML_AUDIT["REASON_CODES"]: its shape, its checks, and which contributions become reasons."""

from __future__ import annotations

from typing import Any

import pytest

from ml_audit.checks import check_settings
from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError
from ml_audit.reasons import ReasonCodePolicy, contributions
from ml_audit.reasons.policy import Reason

from .helpers import REASON_CODES, SHAP


def policy(value: Any = REASON_CODES) -> ReasonCodePolicy:
    return ReasonCodePolicy.from_settings(value)


def test_unset_or_empty_is_disabled() -> None:
    value: Any
    for value in (None, {}):
        parsed = policy(value)
        assert not parsed.enabled
        assert parsed.for_model("credit") is None


def test_the_default_set_covers_every_model_and_models_inherit_unless_they_say() -> None:
    parsed = policy()

    assert parsed.enabled
    default = parsed.for_model("anything")
    assert default is not None
    assert (default.top, default.adverse_sign, default.adverse_outcomes) == (3, "+", None)
    credit = parsed.for_model("credit")
    assert credit is not None
    assert (credit.top, credit.adverse_sign) == (3, "+")
    assert credit.adverse_outcomes == frozenset({"declined", "referred"})
    score = parsed.for_model("score")
    assert score is not None
    assert (score.top, score.adverse_sign) == (2, "-")
    # A model's features first, then the top level's.
    assert score.reason("tenure", "-") == Reason("S01", "The account is new")
    assert score.reason("debt_ratio", "-") == Reason("R01", "Debt is high relative to income")


def test_entry_forms() -> None:
    default = policy().for_model("x")
    assert default is not None
    # (code, text): either sign.
    assert default.reason("debt_ratio", "+") == default.reason("debt_ratio", "-")
    # {"+": ..., "-": None}: per sign.
    assert default.reason("income", "+") == Reason("R02", "Income is too low for the amount asked")
    assert default.reason("income", "-") is None
    # {"code", "text"} and None.
    assert default.reason("late_payments", "+") == Reason(
        "R03", "Payments were late in the past year"
    )
    assert default.reason("zip_code", "+") is None
    assert default.reason("not_configured", "+") is None


def test_without_top_level_features_only_named_models_get_codes() -> None:
    parsed = policy({"MODELS": {"credit": {"FEATURES": {"income": ("R02", "Income is low")}}}})

    assert parsed.enabled
    assert parsed.for_model("credit") is not None
    assert parsed.for_model("fraud") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a dict"),
        ({"FEATURE": {}}, "unknown key(s) 'FEATURE'"),
        ({"TOP": 0, "FEATURES": {}}, '["TOP"] must be an integer from 1 to 50'),
        ({"TOP": True, "FEATURES": {}}, '["TOP"] must be an integer'),
        ({"ADVERSE_SIGN": "up", "FEATURES": {}}, '["ADVERSE_SIGN"] must be "+"'),
        ({"ADVERSE_OUTCOMES": "declined", "FEATURES": {}}, "list of decision outcomes"),
        ({"ADVERSE_OUTCOMES": [""], "FEATURES": {}}, "must list non-empty strings"),
        ({"FEATURES": {"income": "R02"}}, "must be (code, text)"),
        ({"FEATURES": {"income": ("R02",)}}, "must be (code, text)"),
        ({"FEATURES": {"income": ("", "Income is low")}}, "code must be a non-empty string"),
        ({"FEATURES": {"income": ("R02", "Income\nis low")}}, "must be printable text"),
        ({"FEATURES": {"income": ("R" * 33, "Income is low")}}, "at most 32 characters"),
        ({"FEATURES": {"income": {"+": ("R02", "x"), "up": ("R03", "y")}}}, "must be (code"),
        ({"FEATURES": {"": ("R02", "Income is low")}}, "a feature name must be"),
        ({"MODELS": {"credit": {"MODELS": {}}}}, "['credit'] has unknown key(s) 'MODELS'"),
        ({"MODELS": {"credit": []}}, "['credit'] must be a dict"),
        ({"MODELS": {"": {}}}, "a model name must be a non-empty string"),
        (
            {"FEATURES": {"income": ("R02", "Income is low"), "salary": ("R02", "Pay is low")}},
            "code 'R02' has two texts",
        ),
    ],
)
def test_malformed_settings_are_refused_naming_the_entry(value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        policy(value)
    assert message in str(caught.value)


def test_a_code_with_two_texts_only_across_models_is_fine() -> None:
    parsed = policy(
        {
            "MODELS": {
                "a": {"FEATURES": {"income": ("R02", "Income is low")}},
                "b": {"FEATURES": {"income": ("R02", "Revenue is low")}},
            }
        }
    )
    assert parsed.for_model("b") is not None


def test_system_check_reports_a_malformed_setting_once_as_e008(settings: Any) -> None:
    settings.ML_AUDIT = {"REASON_CODES": {"FEATURES": {"income": "R02"}}}

    messages = [m for m in check_settings() if "REASON_CODES" in m.msg]

    assert [m.id for m in messages] == ["ml_audit.E008"]
    assert "must be (code, text)" in messages[0].msg
    with pytest.raises(ConfigurationError):
        audit_settings.REASON_CODES  # noqa: B018


def test_system_check_is_quiet_for_a_good_setting(settings: Any) -> None:
    settings.ML_AUDIT = {"REASON_CODES": REASON_CODES}

    assert [m.id for m in check_settings() if m.id == "ml_audit.E008"] == []
    assert audit_settings.REASON_CODES.enabled


# --- which contributions are reasons ----------------------------------------------------------


def test_adverse_sign_plus_takes_the_top_positive_contributions_strongest_first() -> None:
    default = policy().for_model("x")
    assert default is not None

    derived = default.derive("anything", SHAP)

    # age (-0.40) pushes toward a better outcome: never a reason. TOP is 3.
    assert [(c["feature"], c["contribution"]) for c in derived.codes] == [
        ("debt_ratio", 0.31),
        ("income", 0.22),
        ("late_payments", 0.12),
    ]
    assert [c["code"] for c in derived.codes] == ["R01", "R02", "R03"]
    assert {c["direction"] for c in derived.codes} == {"+"}
    assert derived.codes[0]["text"] == "Debt is high relative to income"
    assert derived.unmapped == ()


def test_an_unmapped_feature_keeps_its_rank_without_a_code() -> None:
    default = policy({"TOP": 4, "FEATURES": {"debt_ratio": ("R01", "Debt is high")}}).for_model("x")
    assert default is not None

    derived = default.derive("declined", SHAP)

    assert [(c["feature"], c["code"]) for c in derived.codes] == [
        ("debt_ratio", "R01"),
        ("income", ""),
        ("late_payments", ""),
        ("zip_code", ""),
    ]
    assert derived.unmapped == ("income", "late_payments", "zip_code")
    assert derived.codes[1]["text"] == ""


def test_adverse_sign_minus_takes_the_negative_contributions() -> None:
    score = policy().for_model("score")
    assert score is not None

    derived = score.derive("declined", SHAP)

    assert [(c["feature"], c["code"], c["direction"]) for c in derived.codes] == [
        ("age", "", "-"),
        ("tenure", "S01", "-"),
    ]


def test_decisions_outside_adverse_outcomes_get_no_reasons() -> None:
    credit = policy().for_model("credit")
    assert credit is not None

    assert credit.derive("approved", SHAP).codes == []
    assert len(credit.derive("referred", SHAP).codes) == 3


def test_zero_and_opposite_contributions_are_never_reasons() -> None:
    default = policy().for_model("x")
    assert default is not None

    assert default.derive("declined", {"income": 0, "age": -1.5}).codes == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"income": 0.2, "age": -0.5}, [("age", -0.5), ("income", 0.2)]),
        ({"feature_importances": {"a": 1}, "shap_values": {"b": 2}}, [("a", 1.0)]),
        ({"shap_values": {"a": 0.1, "b": True, "c": "0.9", "d": None}}, [("a", 0.1)]),
        ({"shap_values": {"a": float("nan"), "b": float("inf"), "c": 0.3}}, [("c", 0.3)]),
        # One mapping per class: no contributions, and base_value is not read as a feature.
        ({"shap_values": {"yes": {"a": 0.1}}, "base_value": 0.5}, []),
        (
            {"attributions": [{"feature": "a", "value": 0.1}, ["b", -0.3], ["a", 0.9], "x"]},
            [("b", -0.3), ("a", 0.1)],
        ),
        ([["income <= 30000", 0.4], ("age", -0.1)], [("income <= 30000", 0.4), ("age", -0.1)]),
        ({"a": 0.2, "b": -0.2, "c": 0.2}, [("a", 0.2), ("b", -0.2), ("c", 0.2)]),
        (None, []),
        ("a text", []),
    ],
)
def test_contributions_read_the_shapes_the_chart_reads(payload: Any, expected: list[Any]) -> None:
    assert contributions(payload) == expected
