"""Helpers for test suites of projects that use ml_audit.

Django's ``TransactionTestCase`` (and pytest-django's ``transactional_db``) empty every table
between tests with DELETE or TRUNCATE, which the append-only triggers refuse. Wrap the test
session in :func:`allow_test_flush` to run those flushes through the documented purge hatch::

    # conftest.py
    import pytest
    from ml_audit.testing import allow_test_flush

    @pytest.fixture(scope="session", autouse=True)
    def _ml_audit_flush():
        with allow_test_flush():
            yield
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import transaction
from django.db.backends.base.operations import BaseDatabaseOperations

from ml_audit import store

__all__ = ["allow_test_flush"]


@contextmanager
def allow_test_flush() -> Iterator[None]:
    """Let Django's test flush empty ml_audit tables while the block is open."""
    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: BaseDatabaseOperations, sql_list: Iterable[str]) -> None:
        alias = self.connection.alias
        with (
            transaction.atomic(using=alias),
            store.allow_purge(using=alias),
            self.connection.cursor() as cursor,
        ):
            for sql in sql_list:
                cursor.execute(sql)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseDatabaseOperations.execute_sql_flush = original  # type: ignore[method-assign]
