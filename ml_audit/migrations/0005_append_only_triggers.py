"""Database-level append-only guard for prediction events and explanation revisions.

PostgreSQL: one trigger function rejects UPDATE, DELETE and TRUNCATE unless the
transaction-local setting ``ml_audit.allow_purge`` is ``on`` (DELETE/TRUNCATE only; set by
``ml_audit.store.allow_purge()``). SQLite: triggers reject UPDATE always and DELETE unless the
current transaction holds a row in ``ml_audit_purge_permit``. Other databases get no
triggers; the system check ml_audit.W002 says so.
"""

from django.db import migrations

APPEND_ONLY_TABLES = ("ml_audit_predictionevent", "ml_audit_explanation")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION ml_audit_forbid_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE')
       AND coalesce(current_setting('ml_audit.allow_purge', true), '') = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'ml_audit: % is append-only; % is not allowed', TG_TABLE_NAME, TG_OP
        USING HINT = 'Audit rows can only be inserted; '
                     'retention purges use ml_audit.store.allow_purge().';
END;
$$;
"""


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION, params=None)
        for table in APPEND_ONLY_TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ml_audit_forbid_mutation()"
            )
            schema_editor.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ml_audit_forbid_mutation()"
            )
    elif vendor == "sqlite":
        schema_editor.execute(
            "CREATE TABLE IF NOT EXISTS ml_audit_purge_permit (granted_at TEXT NOT NULL)"
        )
        for table in APPEND_ONLY_TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'ml_audit: {table} is append-only; UPDATE is not allowed'); "
                "END"
            )
            schema_editor.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                "WHEN NOT EXISTS (SELECT 1 FROM ml_audit_purge_permit) BEGIN "
                f"SELECT RAISE(ABORT, 'ml_audit: {table} is append-only; DELETE is not allowed'); "
                "END"
            )


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for table in APPEND_ONLY_TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        schema_editor.execute("DROP FUNCTION IF EXISTS ml_audit_forbid_mutation()")
    elif vendor == "sqlite":
        for table in APPEND_ONLY_TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        schema_editor.execute("DROP TABLE IF EXISTS ml_audit_purge_permit")


class Migration(migrations.Migration):
    dependencies = [("ml_audit", "0004_upgrade_constraints")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
