"""Capturing the SQL of a test-client request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connection


@contextlib.contextmanager
def all_queries() -> Iterator[list[str]]:
    """The SQL of every query of a test-client request (Django's request_started signal empties
    the connection's query log, so CaptureQueriesContext cannot be used around a request)."""
    captured: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        captured.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield captured
