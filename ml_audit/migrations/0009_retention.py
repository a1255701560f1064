"""Retention: legal holds, purge records; the purge hatch closed to all but the purge role;
the model-version and actor registries' identities made immutable.

PostgreSQL:

* ``ml_audit_forbid_mutation()`` is replaced: DELETE and TRUNCATE pass only when
  ``ml_audit.allow_purge`` is ``on`` *and* the current role is a member of the purge role
  (``ML_AUDIT["PURGE_ROLE"]`` at migrate time, default ``ml_audit_purge``; written into the
  function, re-written by ``manage.py ml_audit_db_roles --apply``) or a superuser (who can
  disable any trigger anyway). A purge role that does not exist opens nothing. The function
  pins ``search_path`` so that no caller can shadow what it calls.
* ``ml_audit_modelversion``: UPDATE of ``id``, ``model_name``, ``version``, ``created_at`` is
  refused (provenance columns stay updatable: ``register_model_version``);
  ``ml_audit_requestingactor``: every UPDATE is refused. DELETE/TRUNCATE of either only
  through the hatch.
* The three new tables are append-only like the audit tables.

SQLite (no roles): the same triggers as 0005 on the new tables; identity triggers on the
registries; the purge permit table still opens the hatch to any writer (docs/retention.md).
"""

import django.db.models.deletion
from django.db import migrations, models

import ml_audit.ids

NEW_TABLES = ("ml_audit_legalhold", "ml_audit_purgerecord", "ml_audit_purgedrow")
MODEL_IDENTITY = ("id", "model_name", "version", "created_at")


def pg_function(role: str) -> str:
    """The hatch, for purge role ``role`` (a plain identifier, checked by ``conf``)."""
    return f"""
CREATE OR REPLACE FUNCTION ml_audit_forbid_mutation() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE')
       AND coalesce(current_setting('ml_audit.allow_purge', true), '') = 'on' THEN
        IF current_setting('is_superuser') = 'on'
           OR (to_regrole('{role}') IS NOT NULL
               AND pg_has_role(current_user, to_regrole('{role}'), 'MEMBER')) THEN
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'ml_audit: % of % needs the purge role {role}', TG_OP, TG_TABLE_NAME
            USING HINT = 'Run manage.py ml_audit_purge as a member of {role}.';
    END IF;
    RAISE EXCEPTION 'ml_audit: % is append-only; % is not allowed', TG_TABLE_NAME, TG_OP
        USING HINT = 'Audit rows can only be inserted; '
                     'retention purges run manage.py ml_audit_purge.';
END;
$$;
"""


PG_IDENTITY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION ml_audit_forbid_identity_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'ml_audit_modelversion'
       AND NOT ({" OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in MODEL_IDENTITY)}) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ml_audit: the identity of a row of % cannot change', TG_TABLE_NAME
        USING HINT = 'Predictions refer to it; register a new model version or actor.';
END;
$$;
"""

REGISTRIES = ("ml_audit_modelversion", "ml_audit_requestingactor")


def _sqlite_append_only(schema_editor, table):
    schema_editor.execute(
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN "
        f"SELECT RAISE(ABORT, 'ml_audit: {table} is append-only; UPDATE is not allowed'); "
        "END"
    )
    _sqlite_no_delete(schema_editor, table)


def _sqlite_no_delete(schema_editor, table):
    schema_editor.execute(
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        "WHEN NOT EXISTS (SELECT 1 FROM ml_audit_purge_permit) BEGIN "
        f"SELECT RAISE(ABORT, 'ml_audit: {table} is append-only; DELETE is not allowed'); "
        "END"
    )


def _pg_append_only(schema_editor, table, *, update=True):
    events = "UPDATE OR DELETE" if update else "DELETE"
    schema_editor.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE {events} ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION ml_audit_forbid_mutation()"
    )
    schema_editor.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION ml_audit_forbid_mutation()"
    )


def forwards(apps, schema_editor):
    from ml_audit.conf import audit_settings

    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(pg_function(audit_settings.PURGE_ROLE), params=None)
        schema_editor.execute(PG_IDENTITY_FUNCTION, params=None)
        for table in NEW_TABLES:
            _pg_append_only(schema_editor, table)
        for table in REGISTRIES:
            _pg_append_only(schema_editor, table, update=False)
            columns = " OF " + ", ".join(MODEL_IDENTITY) if table.endswith("modelversion") else ""
            schema_editor.execute(
                f"CREATE TRIGGER {table}_identity BEFORE UPDATE{columns} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ml_audit_forbid_identity_change()"
            )
    elif vendor == "sqlite":
        for table in NEW_TABLES:
            _sqlite_append_only(schema_editor, table)
        _sqlite_append_only(schema_editor, "ml_audit_requestingactor")
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in MODEL_IDENTITY)
        schema_editor.execute(
            "CREATE TRIGGER ml_audit_modelversion_no_update BEFORE UPDATE ON "
            f"ml_audit_modelversion WHEN {changed} BEGIN SELECT RAISE(ABORT, "
            "'ml_audit: the identity of a row of ml_audit_modelversion cannot change'); END"
        )
        _sqlite_no_delete(schema_editor, "ml_audit_modelversion")


def backwards(apps, schema_editor):
    from importlib import import_module

    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for table in (*NEW_TABLES, *REGISTRIES):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        for table in REGISTRIES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_identity ON {table}")
        schema_editor.execute("DROP FUNCTION IF EXISTS ml_audit_forbid_identity_change()")
        # CREATE OR REPLACE replaces the SET clause too: 0005's function as it was.
        previous = import_module("ml_audit.migrations.0005_append_only_triggers").PG_FUNCTION
        schema_editor.execute(previous, params=None)
    elif vendor == "sqlite":
        for table in (*NEW_TABLES, *REGISTRIES):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")


class Migration(migrations.Migration):
    dependencies = [
        ("ml_audit", "0008_seals"),
    ]

    operations = [
        migrations.CreateModel(
            name="PurgeRecord",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=ml_audit.ids.uuid7,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("run_id", models.UUIDField()),
                ("batch", models.PositiveIntegerField()),
                ("purged_at", models.DateTimeField()),
                ("target", models.CharField(max_length=16)),
                ("model_name", models.CharField(blank=True, default="", max_length=255)),
                ("tenant_id", models.CharField(blank=True, default="", max_length=255)),
                ("counts", models.JSONField(default=dict)),
                ("leaves", models.PositiveIntegerField()),
                ("root", models.CharField(max_length=64)),
                ("time_from", models.DateTimeField()),
                ("time_to", models.DateTimeField()),
                ("policy", models.JSONField(default=dict)),
                ("ran_by", models.CharField(max_length=255)),
                ("database_role", models.CharField(blank=True, default="", max_length=255)),
            ],
            options={
                "ordering": ("-purged_at", "-id"),
                "get_latest_by": "purged_at",
                "indexes": [models.Index(fields=["run_id", "batch"], name="ml_audit_purge_run")],
            },
        ),
        migrations.CreateModel(
            name="LegalHold",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=ml_audit.ids.uuid7,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[("place", "Place"), ("release", "Release")], max_length=8
                    ),
                ),
                ("tenant_id", models.CharField(blank=True, default="", max_length=255)),
                ("actor_type", models.CharField(blank=True, default="", max_length=32)),
                ("actor_id", models.CharField(blank=True, default="", max_length=255)),
                ("model_name", models.CharField(blank=True, default="", max_length=255)),
                (
                    "prediction_ids",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="External prediction ids (prediction_id).",
                    ),
                ),
                ("time_from", models.DateTimeField(blank=True, null=True)),
                ("time_to", models.DateTimeField(blank=True, null=True)),
                (
                    "reference",
                    models.CharField(
                        blank=True,
                        default="",
                        help_text="Case, matter or ticket number.",
                        max_length=255,
                    ),
                ),
                ("reason", models.TextField()),
                ("created_by", models.CharField(max_length=255)),
                ("created_at", models.DateTimeField()),
                (
                    "releases",
                    models.OneToOneField(
                        blank=True,
                        help_text="For a release: the placement it ends.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="released_by",
                        to="ml_audit.legalhold",
                    ),
                ),
            ],
            options={
                "ordering": ("-created_at", "-id"),
                "get_latest_by": "created_at",
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("action", "place"), ("releases__isnull", True)),
                            models.Q(("action", "release"), ("releases__isnull", False)),
                            _connector="OR",
                        ),
                        name="ml_audit_hold_release_names_placement",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="PurgedRow",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("kind", models.PositiveSmallIntegerField()),
                ("row_id", models.UUIDField()),
                ("row_hash", models.CharField(max_length=64)),
                (
                    "purge",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="rows",
                        to="ml_audit.purgerecord",
                    ),
                ),
            ],
            options={
                "ordering": ("id",),
                "indexes": [
                    models.Index(
                        fields=["purge", "kind", "row_id"], name="ml_audit_purgedrow_purge"
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("kind", "row_id"), name="ml_audit_purgedrow_row"
                    )
                ],
            },
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
