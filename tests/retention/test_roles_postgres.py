"""The least-privilege layout on PostgreSQL, attacked for real.

Each test applies ``ml_audit_db_roles --apply`` with role names unique to the run, inside the
test's transaction (CREATE ROLE is transactional: the roles, grants and ownership changes are
rolled back with the test, nothing is left in the cluster), then tries every tamper path as
the application role (``SET ROLE``) and checks that each is refused and that no audit row,
trigger or function changed. What only the owner can do is shown to be detected by
``ml_audit_verify``.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from ml_audit.models import ModelVersion, PredictionEvent
from ml_audit.retention import place_hold, run_purge
from ml_audit.retention.roles import RoleNames
from ml_audit.retention_models import PurgeRecord
from ml_audit.sealing import seal_pending
from ml_audit.sealing.verifier import verify
from tests.retention.helpers import access_row, predict

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

AUDIT_TABLES = (
    "ml_audit_predictionevent",
    "ml_audit_explanation",
    "ml_audit_accesslog",
    "ml_audit_seal",
    "ml_audit_sealmember",
    "ml_audit_modelversion",
    "ml_audit_requestingactor",
    "ml_audit_legalhold",
    "ml_audit_purgerecord",
    "ml_audit_purgedrow",
)
TRIGGERED = {
    "ml_audit_predictionevent": "ml_audit_predictionevent_append_only",
    "ml_audit_modelversion": "ml_audit_modelversion_identity",
    "ml_audit_purgedrow": "ml_audit_purgedrow_append_only",
}
KEY = "p" * 40
#: How PostgreSQL and the guard refuse: privileges, ownership, superuser-only settings.
REFUSED = re.compile(
    "permission denied|must be owner|must be superuser|must have admin option|"
    "needs the purge role|append-only|cannot change|only superusers|"
    "must be able to SET ROLE|Only roles with the"
).search


@pytest.fixture
def roles(settings: Any) -> Iterator[RoleNames]:
    suffix = uuid.uuid4().hex[:10]
    names = RoleNames(
        owner=f"mla_owner_{suffix}",
        app=f"mla_app_{suffix}",
        purge=f"mla_purge_{suffix}",
        auditor=f"mla_auditor_{suffix}",
    )
    settings.ML_AUDIT = {
        "PURGE_ROLE": names.purge,
        "SEAL_KEY": KEY,
        "SEAL_KEY_ID": "roles",
        "SEAL_LAG_SECONDS": 0,
        "RETENTION": {"DEFAULT_DAYS": 400},
    }
    call_command(
        "ml_audit_db_roles",
        "--apply",
        "--owner", names.owner,
        "--app", names.app,
        "--purge", names.purge,
        "--auditor", names.auditor,
        stdout=io.StringIO(),
    )  # fmt: skip
    yield names
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
    # Rolled back with the test; belt and braces if a test committed.
    assert not _roles_committed(names)


def _roles_committed(names: RoleNames) -> bool:
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"] or None,
        port=settings["PORT"] or None, autocommit=True,
    ) as other:  # fmt: skip
        found = other.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)",
            [[names.owner, names.app, names.purge, names.auditor]],
        ).fetchone()
    return bool(found and found[0])


def _trail() -> list[PredictionEvent]:
    events = [predict(i, age_days=500, explain=1) for i in range(3)]
    events.append(predict(3, age_days=5, explain=1))
    access_row(300)
    place_hold(reason="Litigation", created_by="alice", prediction_ids=[events[0].prediction_id])
    seal_pending(now=timezone.now() + dt.timedelta(seconds=1))
    return events


def as_role(role: str, *statements: str, params: list[Any] | None = None) -> str | None:
    """Run ``statements`` as ``role`` in a savepoint: the error, or ``None`` if all ran."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {role}")
            for sql in statements:
                cursor.execute(sql, params if "%s" in sql else None)
            cursor.execute("RESET ROLE")
    except DatabaseError as exc:
        return str(exc).splitlines()[0]
    return None


def snapshot() -> dict[str, Any]:
    """Every audit row, every trigger (and whether it is enabled) and the guard functions."""
    state: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for table in AUDIT_TABLES:
            cursor.execute(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM {table} t"
            )
            state[table] = cursor.fetchone()
        cursor.execute(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgrelid::regclass::text LIKE 'ml_audit_%%' ORDER BY tgname"
        )
        state["triggers"] = cursor.fetchall()
        cursor.execute(
            "SELECT proname, md5(pg_get_functiondef(oid)) FROM pg_proc "
            "WHERE proname LIKE 'ml_audit_%%' ORDER BY proname"
        )
        state["functions"] = cursor.fetchall()
        cursor.execute(
            "SELECT attrelid::regclass::text, attname, format_type(atttypid, atttypmod) "
            "FROM pg_attribute WHERE attrelid::regclass::text LIKE 'ml_audit_%%' "
            "AND attnum > 0 ORDER BY 1, 2"
        )
        state["columns"] = cursor.fetchall()
    return state


def tamper_paths(roles: RoleNames) -> list[tuple[str, ...]]:
    allow = "SELECT set_config('ml_audit.allow_purge', 'on', true)"
    paths: list[tuple[str, ...]] = []
    for table in AUDIT_TABLES:
        paths += [
            (f"UPDATE {table} SET id = id",),
            (f"DELETE FROM {table}",),
            (f"TRUNCATE {table}",),
            (f"TRUNCATE {table} CASCADE",),
            (allow, f"DELETE FROM {table}"),
            ("SET LOCAL ml_audit.allow_purge = 'on'", f"TRUNCATE {table} CASCADE"),
            (f"ALTER TABLE {table} DISABLE TRIGGER USER",),
            (f"ALTER TABLE {table} DISABLE TRIGGER ALL",),
            (f"ALTER TABLE {table} ALTER COLUMN id TYPE uuid USING gen_random_uuid()",),
            (f"ALTER TABLE {table} OWNER TO {roles.app}",),
            (f"ALTER TABLE {table} RENAME TO {table}_old",),
            (f"DROP TABLE {table} CASCADE",),
            (f"CREATE RULE tamper AS ON INSERT TO {table} DO INSTEAD NOTHING",),
            (f"CREATE POLICY tamper ON {table} USING (false)",),
        ]
    for table, trigger in TRIGGERED.items():
        paths.append((f"DROP TRIGGER {trigger} ON {table}",))
    paths += [
        (
            "ALTER TABLE ml_audit_predictionevent ALTER COLUMN decision_outcome TYPE "
            "varchar(64) USING 'decline'",
        ),
        (
            "CREATE OR REPLACE FUNCTION ml_audit_forbid_mutation() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
        ),
        (
            "CREATE OR REPLACE FUNCTION ml_audit_forbid_identity_change() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        ),
        ("DROP FUNCTION ml_audit_forbid_mutation() CASCADE",),
        ("ALTER FUNCTION ml_audit_forbid_mutation() OWNER TO " + roles.app,),
        # The registries: identities, and the rows predictions hash through.
        ("UPDATE ml_audit_modelversion SET version = '2.0'",),
        ("UPDATE ml_audit_modelversion SET model_name = 'other'",),
        ("UPDATE ml_audit_requestingactor SET actor_id = 'someone-else'",),
        ("UPDATE ml_audit_requestingactor SET tenant_id = 'globex'",),
        # A purge-permit-like table, forged purge records and tombstones, released holds.
        ("CREATE TABLE ml_audit_purge_permit (granted_at text)",),
        ("CREATE TABLE public.ml_audit_forbid_mutation (x int)",),
        (
            "INSERT INTO ml_audit_purgerecord (id, run_id, batch, purged_at, target, model_name, "
            "tenant_id, counts, leaves, root, time_from, time_to, policy, ran_by, database_role)"
            " VALUES (gen_random_uuid(), gen_random_uuid(), 1, now(), 'prediction', '', '', "
            "'{}', 0, '', now(), now(), '{}', 'forger', '')",
        ),
        (
            "INSERT INTO ml_audit_purgedrow (purge_id, kind, row_id, row_hash) "
            "SELECT id, 1, gen_random_uuid(), '' FROM ml_audit_purgerecord LIMIT 1",
        ),
        ("UPDATE ml_audit_legalhold SET reason = 'nothing'",),
        ("DELETE FROM ml_audit_legalhold",),
        # Switching triggers off, or roles.
        ("SET session_replication_role = replica",),
        ("SET session_replication_role = replica", "DELETE FROM ml_audit_predictionevent"),
        (f"GRANT {roles.purge} TO {roles.app}",),
        (f"ALTER ROLE {roles.app} SUPERUSER",),
        (f"ALTER ROLE {roles.app} BYPASSRLS",),
        ("CREATE EXTENSION IF NOT EXISTS pageinspect",),
        ("COPY ml_audit_predictionevent FROM PROGRAM 'true'",),
        ("SELECT lo_import('/etc/passwd')",),
    ]
    return paths


def test_the_application_role_changes_nothing(roles: RoleNames) -> None:
    _trail()
    # The purge needs a record to attack: one purge as the purge role.
    assert as_role(roles.purge) is None
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {roles.purge}")
    run_purge(ran_by="setup", execute=True)
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
    assert PurgeRecord.objects.exists()
    with connection.cursor() as cursor:  # no pending FK checks: TRUNCATE must meet the guard
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    before = snapshot()
    succeeded, unexpected = [], []
    paths = tamper_paths(roles)
    for statements in paths:
        error = as_role(roles.app, *statements)
        if error is None:
            succeeded.append(statements)
        elif not REFUSED(error):
            unexpected.append((statements, error))
    assert succeeded == []
    assert unexpected == []
    assert snapshot() == before
    assert len(paths) > 150
    # SET ROLE is checked against the *session* user (here the test's superuser), so it is
    # checked as membership: the application's login can become neither owner nor purge role.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_has_role(%s, %s, 'MEMBER'), pg_has_role(%s, %s, 'MEMBER'), "
            "rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles WHERE rolname = %s",
            [roles.app, roles.purge, roles.app, roles.owner, roles.app],
        )
        assert cursor.fetchone() == (False, False, False)


def test_a_role_with_delete_privilege_but_not_the_purge_role_cannot_open_the_hatch(
    roles: RoleNames,
) -> None:
    _trail()
    rogue = f"{roles.app}_rogue"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {rogue}")
        cursor.execute(f"GRANT SELECT, DELETE, TRUNCATE ON ml_audit_predictionevent TO {rogue}")
        cursor.execute(f"GRANT SELECT, DELETE, TRUNCATE ON ml_audit_explanation TO {rogue}")
        # The reason codes reference explanations: TRUNCATE must name them too.
        cursor.execute(f"GRANT SELECT, DELETE, TRUNCATE ON ml_audit_reasoncodes TO {rogue}")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    before = snapshot()
    allow = "SELECT set_config('ml_audit.allow_purge', 'on', true)"
    for statement in (
        "DELETE FROM ml_audit_explanation",
        "TRUNCATE ml_audit_explanation, ml_audit_reasoncodes",
        "DELETE FROM ml_audit_predictionevent",
    ):
        error = as_role(rogue, allow, statement)
        assert error is not None
        assert "needs the purge role" in error, error
    assert snapshot() == before


def test_the_application_role_still_records_and_reads(roles: RoleNames) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {roles.app}")
    try:
        events = [predict(i, age_days=1, explain=1) for i in range(3)]
        access_row(1)
        place_hold(reason="r", created_by="a", tenant_id="acme")
        seal = seal_pending(now=timezone.now() + dt.timedelta(seconds=1))
        from ml_audit.services import register_model_version

        register_model_version("credit", "1.0", commit_hash="abc", build_id="b7")
        assert PredictionEvent.objects.count() == 3
        assert seal is not None
        assert seal.leaves == 8  # 3 predictions, 3 explanations, 1 access row, the hold
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == roles.app
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert ModelVersion.objects.get().commit_hash == "abc"
    assert len(events) == 3


def test_the_auditor_reads_and_writes_nothing(roles: RoleNames) -> None:
    _trail()
    assert as_role(roles.auditor, *(f"SELECT count(*) FROM {t}" for t in AUDIT_TABLES)) is None
    for table in AUDIT_TABLES:
        assert as_role(roles.auditor, f"DELETE FROM {table}") is not None
    assert (
        as_role(roles.auditor, "INSERT INTO ml_audit_legalhold (id) VALUES (gen_random_uuid())")
        is not None
    )


def test_only_the_purge_role_purges_and_the_record_names_it(roles: RoleNames) -> None:
    events = _trail()
    # As the application: refused by the trigger, nothing removed, no record left behind.
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {roles.app}")
    with pytest.raises(DatabaseError):
        run_purge(ran_by="app", execute=True)
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
    assert PredictionEvent.objects.count() == 4
    assert not PurgeRecord.objects.exists()
    # An operator's login that is a member of the purge role: the purge SETs ROLE to it.
    operator = f"{roles.app}_operator"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {operator} IN ROLE {roles.purge}")
        cursor.execute(f"SET ROLE {operator}")
    result = run_purge(ran_by="operator", execute=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == operator  # the batch's SET LOCAL ROLE was undone
        cursor.execute("RESET ROLE")
    # events[0] is held; the recent one is kept.
    assert result.counts == {"prediction": 2, "explanation": 2}
    assert {r.database_role for r in result.records} == {roles.purge}
    assert set(PredictionEvent.objects.values_list("pk", flat=True)) == {
        events[0].pk,
        events[3].pk,
    }


def test_what_the_owner_can_still_do_is_detected_by_verify(roles: RoleNames) -> None:
    _trail()
    assert verify().ok
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"SET ROLE {roles.owner}")
        # Rewrites every row; no row trigger fires.
        cursor.execute(
            "ALTER TABLE ml_audit_predictionevent ALTER COLUMN decision_outcome TYPE "
            "varchar(64) USING 'decline'"
        )
        # Empties the guard, then deletes a sealed access-log row.
        cursor.execute(
            "CREATE OR REPLACE FUNCTION ml_audit_forbid_mutation() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; "
            "RETURN NEW; END $$"
        )
        cursor.execute("DELETE FROM ml_audit_accesslog")
        cursor.execute("RESET ROLE")
    found = verify().findings
    assert found["changed_row"].count == 4
    assert found["deleted_row"].first["table"] == "access"
