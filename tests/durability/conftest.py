"""Fixtures of the fault tests: the session's scratch PostgreSQL database, and the table of
figures printed at the end of the session (and written to ``harness.FIGURES_FILE``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _pytest.terminal import TerminalReporter

from tests.durability import harness


@pytest.fixture(scope="session")
def durability_db(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[harness.ScratchDatabase]:
    """A fresh, migrated database next to ``DATABASE_URL``'s (not the test database, which
    lives in a transaction the children could not see), dropped at the end of the session."""
    with harness.scratch_database(
        os.environ["DATABASE_URL"], tmp_path_factory.mktemp("durability-db")
    ) as database:
        yield database


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if not harness.TRIALS_RUN:
        return
    table = harness.figures_table()
    terminalreporter.write_sep("=", "ml_audit fault tests: acknowledged and missing")
    terminalreporter.write(table)
    try:
        harness.FIGURES_FILE.write_text(
            table + "\n" + harness.details_table() + "\n", encoding="utf-8"
        )
    except OSError as exc:
        terminalreporter.write_line(f"could not write {harness.FIGURES_FILE}: {exc}")
    else:
        terminalreporter.write_line(f"(also written to {harness.FIGURES_FILE})")
