"""Settings and system checks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from django.core.checks import CheckMessage, run_checks
from django.core.management import call_command
from django.test import override_settings

from ml_audit.checks import check_settings
from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError


def ids(messages: list[CheckMessage]) -> list[str]:
    return [str(m.id) for m in messages]


def test_defaults() -> None:
    assert audit_settings.DATABASE_ALIAS == "default"
    assert audit_settings.ENVIRONMENT == ""
    assert frozenset({"features"}) == audit_settings.REDACT_PAYLOADS
    assert audit_settings.NAIVE_DATETIME_POLICY == "reject"
    assert audit_settings.redaction_policy.mask_value == "*****"


def test_values_follow_override_settings() -> None:
    with override_settings(ML_AUDIT={"ENVIRONMENT": "prod", "REDACTION": {"MASK_VALUE": "#"}}):
        assert audit_settings.ENVIRONMENT == "prod"
        assert audit_settings.redaction_policy.mask_value == "#"
    assert audit_settings.ENVIRONMENT == ""
    assert audit_settings.redaction_policy.mask_value == "*****"


def test_new_redaction_key_wins_over_the_seed_setting() -> None:
    with override_settings(
        ML_AUDIT_REDACTION={"MASK_VALUE": "[seed]", "DENYLIST": ["x"]},
        ML_AUDIT={"REDACTION": {"MASK_VALUE": "[new]"}},
    ):
        policy = audit_settings.redaction_policy
        assert policy.mask_value == "[new]"
        assert "x" in policy.denylist


@pytest.mark.parametrize(
    ("ml_audit", "attribute", "message"),
    [
        ({"DATABSE_ALIAS": "x"}, "DATABASE_ALIAS", "Unknown ML_AUDIT key"),
        ({"DATABASE_ALIAS": "missing"}, "DATABASE_ALIAS", "not in settings.DATABASES"),
        ({"REDACT_PAYLOADS": ["features", "body"]}, "REDACT_PAYLOADS", "body"),
        ({"REDACT_PAYLOADS": "output"}, "REDACT_PAYLOADS", "list"),
        ({"NAIVE_DATETIME_POLICY": "local"}, "NAIVE_DATETIME_POLICY", "reject, utc"),
        ({"ENVIRONMENT": 3}, "ENVIRONMENT", "string"),
    ],
)
def test_invalid_values_raise_configuration_error(
    ml_audit: dict[str, object], attribute: str, message: str
) -> None:
    with override_settings(ML_AUDIT=ml_audit), pytest.raises(ConfigurationError, match=message):
        getattr(audit_settings, attribute)


def test_checks_are_clean_for_the_test_settings() -> None:
    assert check_settings() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ML_AUDIT": ["not", "a", "dict"]}, ["ml_audit.E001"]),
        ({"ML_AUDIT": {"NOPE": 1}}, ["ml_audit.E001"]),
        ({"ML_AUDIT": {"DATABASE_ALIAS": "missing"}}, ["ml_audit.E001"]),
        ({"ML_AUDIT": {"REDACTION": {"MODE": "hash"}}}, ["ml_audit.E002"]),
        ({"ML_AUDIT_REDACTION": {"MODE": "scramble"}}, ["ml_audit.E002"]),
        ({"USE_TZ": False}, ["ml_audit.E003"]),
        ({"ML_AUDIT": {"DATABASE_ALIAS": "audit"}}, ["ml_audit.W001"]),
        (
            {
                "ML_AUDIT": {"DATABASE_ALIAS": "audit"},
                "DATABASE_ROUTERS": ["ml_audit.routers.MLAuditRouter"],
            },
            [],
        ),
    ],
)
def test_checks_report_bad_configuration(overrides: dict[str, object], expected: list[str]) -> None:
    with override_settings(**overrides):
        messages = check_settings()
    assert ids(messages) == expected
    for message in messages:
        assert message.hint


def test_hash_mode_without_key_message_says_how_to_fix() -> None:
    with override_settings(ML_AUDIT={"REDACTION": {"MODE": "hash"}}):
        (message,) = check_settings()
    assert "HASH_KEY" in message.msg


def test_django_check_command_is_clean_with_admin_installed() -> None:
    call_command("check", fail_level="WARNING")
    assert not [m for m in run_checks() if str(m.id).startswith(("ml_audit", "admin"))]


def test_spool_dir_defaults_to_base_dir_and_warns_under_temp() -> None:
    from django.conf import settings

    assert audit_settings.SPOOL_DIR == settings.BASE_DIR / "ml_audit_spool"
    assert check_settings() == []
    with override_settings(BASE_DIR=None):
        assert ids(check_settings()) == ["ml_audit.W003"]
        assert str(audit_settings.SPOOL_DIR).startswith(tempfile.gettempdir())
    with override_settings(ML_AUDIT={"SPOOL_DIR": "/var/lib/app/spool"}):
        assert Path("/var/lib/app/spool") == audit_settings.SPOOL_DIR
        assert check_settings() == []


def test_backend_without_triggers_gets_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connections

    monkeypatch.setattr(connections["default"], "vendor", "mysql")
    (message,) = check_settings()
    assert message.id == "ml_audit.W002"
    assert "mysql" in message.msg
