"""ml_audit_db_roles prints the layout anywhere and refuses --apply without PostgreSQL."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from ml_audit.retention.roles import RoleNames


def _print(*args: str) -> str:
    out = io.StringIO()
    call_command("ml_audit_db_roles", *args, stdout=out)
    return out.getvalue()


def test_prints_the_four_roles_and_the_grants(settings: Any) -> None:
    settings.ML_AUDIT = {"PURGE_ROLE": "audit_purgers"}
    sql = _print("--owner", "o1", "--app", "a1", "--auditor", "r1")
    for role in ("o1", "a1", "audit_purgers", "r1"):
        assert f"CREATE ROLE {role} LOGIN" in sql
    assert "GRANT INSERT ON ml_audit_predictionevent TO a1" in sql
    assert "GRANT DELETE ON ml_audit_predictionevent TO audit_purgers" in sql
    assert "GRANT DELETE ON ml_audit_predictionevent TO a1" not in sql
    assert "GRANT UPDATE (created_at, framework" in sql
    assert "GRANT INSERT ON ml_audit_purgerecord TO audit_purgers" in sql
    assert "GRANT INSERT ON ml_audit_purgerecord TO a1" not in sql
    assert "ALTER TABLE ml_audit_seal OWNER TO o1" in sql
    assert "REVOKE o1, audit_purgers, r1 FROM a1" in sql
    # The hatch is rewritten for the purge role named here.
    assert "to_regrole(''audit_purgers'')" in sql
    assert all(
        line.endswith(";") for line in sql.splitlines() if line.startswith(("GRANT", "DO $$"))
    )


@pytest.mark.parametrize(
    "args",
    [("--app", "App"), ("--owner", "x; DROP TABLE y"), ("--app", "same", "--owner", "same")],
)
def test_refuses_bad_role_names(args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError):
        _print(*args)


def test_role_names_are_checked() -> None:
    with pytest.raises(ValueError, match="plain PostgreSQL role name"):
        RoleNames(app='a"b')


@pytest.mark.django_db
def test_apply_needs_postgresql() -> None:
    if connection.vendor == "postgresql":
        pytest.skip("the PostgreSQL layout is applied in test_roles_postgres.py")
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        _print("--apply")
