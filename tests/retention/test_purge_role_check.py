"""System check ``ml_audit.E009``: on PostgreSQL, with purging configured, the purge role written
into the trigger function at migrate time must be ``ML_AUDIT["PURGE_ROLE"]``; the check only
reads the database where Django runs database checks, and says nothing when it is down."""

from __future__ import annotations

from importlib import import_module
from typing import Any
from unittest import mock

import pytest
from django.core.checks import Tags, run_checks
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from ml_audit.checks import check_purge_role_in_trigger
from ml_audit.retention.roles import trigger_purge_role
from tests.retention.helpers import RETENTION

pytestmark = pytest.mark.django_db

#: The role migration 0009 wrote into the test database's trigger function (the default).
MIGRATED_ROLE = "ml_audit_purge"


def e009(databases: Any = ("default",)) -> list[Any]:
    found = check_purge_role_in_trigger(databases=list(databases) if databases else None)
    return [message for message in found if message.id == "ml_audit.E009"]


def test_no_database_check_no_query(settings: Any) -> None:
    """Plain ``manage.py check`` (no ``databases``) never touches the database."""
    settings.ML_AUDIT = {**RETENTION, "PURGE_ROLE": "ml_audit_other"}
    with CaptureQueriesContext(connection) as queries:
        assert e009(databases=None) == []
        assert e009(databases=["another"]) == []
    assert len(queries) == 0


def test_nothing_to_check_without_purging(settings: Any) -> None:
    settings.ML_AUDIT = {}
    with CaptureQueriesContext(connection) as queries:
        assert e009() == []
    assert len(queries) == 0


def test_an_unreachable_database_is_no_error(settings: Any) -> None:
    """The database down (what Django raises when PostgreSQL refuses the connection): no
    message, no exception; on either backend, seen as PostgreSQL."""
    settings.ML_AUDIT = {**RETENTION, "PURGE_ROLE": "ml_audit_other"}
    refused = OperationalError("connection to server at 127.0.0.1, port 5432 failed")
    with (
        mock.patch.object(connection, "vendor", "postgresql"),
        mock.patch.object(connection, "cursor", side_effect=refused) as cursor,
    ):
        assert e009() == []
    assert cursor.called


@pytest.mark.postgres
def test_the_migrated_role_is_read_from_the_trigger_function() -> None:
    assert trigger_purge_role(connection) == MIGRATED_ROLE


@pytest.mark.postgres
def test_a_changed_purge_role_is_an_error(settings: Any) -> None:
    settings.ML_AUDIT = {**RETENTION}
    assert e009() == []  # the default, as migrated
    settings.ML_AUDIT = {**RETENTION, "PURGE_ROLE": "ml_audit_other"}
    (error,) = e009()
    assert "opens the purge hatch to role 'ml_audit_purge'" in error.msg
    assert "ML_AUDIT['PURGE_ROLE'] is 'ml_audit_other'" in error.msg
    assert "ml_audit_db_roles --apply --database default" in error.hint
    # Registered as a database check: migrate and check --database run it.
    found = run_checks(tags=[Tags.database], databases=["default"])
    assert "ml_audit.E009" in {message.id for message in found}
    # A PURGE_ROLE alone (no retention periods) says purging is meant: checked too.
    settings.ML_AUDIT = {"PURGE_ROLE": "ml_audit_other"}
    assert len(e009()) == 1


@pytest.mark.postgres
def test_rewriting_the_function_as_ml_audit_db_roles_does_fixes_it(settings: Any) -> None:
    settings.ML_AUDIT = {**RETENTION, "PURGE_ROLE": "ml_audit_other"}
    assert len(e009()) == 1
    function = import_module("ml_audit.migrations.0009_retention").pg_function("ml_audit_other")
    with connection.cursor() as cursor:
        cursor.execute(function)  # what ml_audit_db_roles --apply runs; rolled back after
    assert trigger_purge_role(connection) == "ml_audit_other"
    assert e009() == []
    settings.ML_AUDIT = {**RETENTION}
    assert len(e009()) == 1
