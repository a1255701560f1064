"""A database created by django-ml-audit 0.2.0 upgrades to ours, keeping every row and id.

0.2.0 (a different codebase published under the same distribution name) builds a database in a
throwaway virtualenv and records a variety of rows through its public API and ORM
(``build_old_db.py``); our ``migrate`` then upgrades it, and a second database is built by our
``migrate`` alone (``inspect_new_db.py`` for both). The test asserts that

* the two databases have the same schema (normalised: see ``inspect_new_db.py``), and that our
  models have no changes the migrations lack;
* every row 0.2.0 stored is readable through our read-only API with its ids and values: the
  features as 0.2.0 redacted them, output, confidence, outcome, status, latency, timestamps,
  model name and version, the actor's identity, the request context 0.2.0 kept on the actor now
  on each prediction, a non-W3C ``trace_id`` (an X-Request-ID) as ``correlation_id``, and the
  explanation as revision 1 holding the last content 0.2.0 held; model versions, actors and
  explanations keep their UUIDs (read through our ORM);
* what the README's "Upgrading from 0.2.0" promises beyond that: values our schema has no
  column for or refuses (0.2.0's ``created_at``/``updated_at``, a caller's fingerprint, an
  out-of-range confidence or latency, an unknown status, non-object metadata) are kept under
  ``metadata["ml_audit_0_2_0"]``; ``input_fingerprint`` is ours (SHA-256 of the redacted
  features); ``redaction`` names the features carrying 0.2.0's mask; an actor identity 0.2.0
  stored twice becomes its oldest row, each prediction keeping its own request context;
* ``ml_audit.store.verify_event`` / ``verify_explanation`` accept every migrated row;
* the append-only triggers refuse an UPDATE (and a DELETE) of a migrated row.

SQLite always; PostgreSQL when ``DATABASE_URL`` points at one (two scratch databases,
``<name>_upgrade_old`` and ``<name>_upgrade_fresh``, created and dropped on that server).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.upgrade import harness
from tests.upgrade.harness import OldVenv


def check_upgrade(python: Path, old_database: str, fresh_database: str, workdir: Path) -> None:
    manifest = harness.build_old_database(python, old_database, workdir)
    problems = harness.check_manifest(manifest)
    assert not problems, "0.2.0 did not build what the test expects:\n" + harness.describe(problems)

    upgraded = harness.inspect_database(old_database, workdir, "upgraded")
    fresh = harness.inspect_database(fresh_database, workdir, "fresh")
    failures = [
        harness.script_failure(upgraded, "our migrations on the 0.2.0 database"),
        harness.script_failure(fresh, "our migrations on an empty database"),
    ]
    failures = [failure for failure in failures if failure]
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)

    assert not fresh["makemigrations"]["changes"], (
        "the models have changes the migrations lack:\n" + fresh["makemigrations"]["output"]
    )
    differences = harness.schema_differences(upgraded, fresh)
    assert not differences, (
        "the upgraded 0.2.0 database and a fresh one differ in schema:\n"
        + harness.describe(differences)
    )
    problems = harness.upgrade_problems(manifest, upgraded)
    assert not problems, "rows stored by 0.2.0 did not survive the upgrade:\n" + harness.describe(
        problems
    )


def test_upgrade_from_0_2_0_on_sqlite(old_venv: OldVenv, tmp_path: Path) -> None:
    python = old_venv.require()
    check_upgrade(
        python,
        harness.sqlite_url(tmp_path / "old.sqlite3"),
        harness.sqlite_url(tmp_path / "fresh.sqlite3"),
        tmp_path,
    )


@pytest.mark.postgres
def test_upgrade_from_0_2_0_on_postgresql(old_venv: OldVenv, tmp_path: Path) -> None:
    python = old_venv.require()
    with harness.postgres_databases(
        os.environ["DATABASE_URL"], "_upgrade_old", "_upgrade_fresh"
    ) as (old_database, fresh_database):
        check_upgrade(python, old_database, fresh_database, tmp_path)
