"""The retention policy: parsing, which period applies, the floor and its system check."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ml_audit.checks import check_settings
from ml_audit.exceptions import ConfigurationError
from ml_audit.retention.policy import MIN_FLOOR_DAYS, RetentionPolicy


def policy(value: dict[str, Any], override: str | None = None) -> RetentionPolicy:
    return RetentionPolicy.from_settings(value, override)


def test_defaults_keep_everything_forever() -> None:
    empty = policy({})
    assert not empty.purges_anything
    assert empty.rule_for("credit", "acme").days is None
    assert empty.floor_days == MIN_FLOOR_DAYS == 183


def test_specific_periods_override_the_default_and_the_longer_wins() -> None:
    p = policy({"DEFAULT_DAYS": 760, "MODELS": {"credit": 900}, "TENANTS": {"acme": 1200}})
    assert (p.rule_for("other", "x").days, p.rule_for("other", "x").source) == (
        760,
        "DEFAULT_DAYS",
    )
    assert p.rule_for("credit", "x").days == 900
    assert p.rule_for("credit", "acme").source == "TENANTS['acme']"
    assert p.rule_for("other", "acme").days == 1200


def test_a_specific_rule_can_shorten_the_default_and_none_means_forever() -> None:
    p = policy({"DEFAULT_DAYS": 760, "MODELS": {"chat": 200, "loan": None}})
    assert p.rule_for("chat", "x").days == 200
    assert p.rule_for("loan", "x").days is None
    assert p.rule_for("loan", "x").cutoff(dt.datetime.now(dt.UTC)) is None


def test_access_log_defaults_to_the_default_period() -> None:
    assert policy({"DEFAULT_DAYS": 400}).access_log_days == 400
    assert policy({"DEFAULT_DAYS": 400, "ACCESS_LOG_DAYS": 2200}).access_log_days == 2200


@pytest.mark.parametrize(
    "value",
    [
        [],
        {"DEFAULT": 400},
        {"DEFAULT_DAYS": 0},
        {"DEFAULT_DAYS": "400"},
        {"DEFAULT_DAYS": True},
        {"MODELS": ["credit"]},
        {"TENANTS": {"acme": -1}},
        {"FLOOR_DAYS": None},
    ],
)
def test_malformed_settings_are_refused(value: Any) -> None:
    with pytest.raises(ConfigurationError):
        policy(value)


def test_periods_below_the_floor_are_named() -> None:
    p = policy({"DEFAULT_DAYS": 90, "MODELS": {"x": 400}, "TENANTS": {"t": 30}})
    assert p.below_floor() == [
        "DEFAULT_DAYS=90 (< 183)",
        "ACCESS_LOG_DAYS=90 (< 183)",
        "TENANTS['t']=30 (< 183)",
    ]
    with pytest.raises(ConfigurationError, match="RETENTION_FLOOR_OVERRIDE"):
        p.check()


def test_a_raised_floor_applies_and_a_lowered_one_needs_the_override() -> None:
    assert policy({"FLOOR_DAYS": 762, "DEFAULT_DAYS": 400}).below_floor() == [
        "DEFAULT_DAYS=400 (< 762)",
        "ACCESS_LOG_DAYS=400 (< 762)",
    ]
    assert policy({"FLOOR_DAYS": 30, "DEFAULT_DAYS": 30}).below_floor()[0] == (
        "FLOOR_DAYS=30 (< 183)"
    )


def test_the_override_needs_a_reason() -> None:
    with pytest.raises(ConfigurationError):
        policy({"DEFAULT_DAYS": 30}, "yes")
    p = policy({"DEFAULT_DAYS": 30}, "  Contract with customer X, DPA section 4  ")
    assert p.below_floor() == []
    assert p.describe()["FLOOR_OVERRIDE"] == "Contract with customer X, DPA section 4"


def _ids(settings: Any, ml_audit: dict[str, Any]) -> list[str]:
    settings.ML_AUDIT = ml_audit
    return [str(message.id) for message in check_settings()]


def test_system_check_e006(settings: Any) -> None:
    assert "ml_audit.E006" not in _ids(settings, {"RETENTION": {"DEFAULT_DAYS": 183}})
    assert "ml_audit.E006" in _ids(settings, {"RETENTION": {"DEFAULT_DAYS": 182}})
    assert "ml_audit.E006" not in _ids(
        settings,
        {"RETENTION": {"DEFAULT_DAYS": 182}, "RETENTION_FLOOR_OVERRIDE": "Test data only, no PII"},
    )
    # A malformed policy is E001, not E006.
    ids = _ids(settings, {"RETENTION": {"DEFAULT_DAYS": "x"}})
    assert "ml_audit.E001" in ids
    assert "ml_audit.E006" not in ids


def test_purge_role_must_be_a_plain_identifier(settings: Any) -> None:
    assert "ml_audit.E001" in _ids(settings, {"PURGE_ROLE": 'x"; DROP TABLE y; --'})
    assert "ml_audit.E001" not in _ids(settings, {"PURGE_ROLE": "audit_purger"})
