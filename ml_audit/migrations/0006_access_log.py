"""The access log of the REST API (``AccessLog``), append-only like predictions.

The same database guard as 0002, on ``ml_audit_accesslog``: on PostgreSQL the existing
``ml_audit_forbid_mutation()`` function rejects UPDATE/DELETE (row) and TRUNCATE (statement)
unless ``ml_audit.store.allow_purge()`` is open (DELETE/TRUNCATE only); on SQLite UPDATE is
always rejected and DELETE unless the transaction holds an ``ml_audit_purge_permit`` row.
"""

from django.db import migrations, models

import ml_audit.records

TABLE = "ml_audit_accesslog"


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION ml_audit_forbid_mutation()"
        )
        schema_editor.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ml_audit_forbid_mutation()"
        )
    elif vendor == "sqlite":
        schema_editor.execute(
            f"CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE} BEGIN "
            f"SELECT RAISE(ABORT, 'ml_audit: {TABLE} is append-only; UPDATE is not allowed'); "
            "END"
        )
        schema_editor.execute(
            f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
            "WHEN NOT EXISTS (SELECT 1 FROM ml_audit_purge_permit) BEGIN "
            f"SELECT RAISE(ABORT, 'ml_audit: {TABLE} is append-only; DELETE is not allowed'); "
            "END"
        )


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
    elif vendor == "sqlite":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_update")
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")


class Migration(migrations.Migration):
    dependencies = [
        ("ml_audit", "0005_append_only_triggers"),
    ]

    operations = [
        migrations.CreateModel(
            name="AccessLog",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=ml_audit.records.uuid7,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("accessed_at", models.DateTimeField()),
                ("user_id", models.CharField(blank=True, default="", max_length=255)),
                ("username", models.CharField(blank=True, default="", max_length=150)),
                ("endpoint", models.CharField(max_length=64)),
                ("method", models.CharField(max_length=16)),
                ("path", models.TextField()),
                ("query", models.JSONField(blank=True, default=dict)),
                ("status_code", models.PositiveSmallIntegerField()),
                ("returned_ids", models.JSONField(blank=True, default=list)),
                ("result_count", models.PositiveIntegerField(default=0)),
                ("client_ip", models.GenericIPAddressField(blank=True, null=True)),
                ("tenant_scope", models.JSONField(blank=True, null=True)),
            ],
            options={
                "ordering": ("-accessed_at", "-id"),
                "get_latest_by": "accessed_at",
                "indexes": [
                    models.Index(fields=["accessed_at"], name="ml_audit_access_at"),
                    models.Index(fields=["user_id", "accessed_at"], name="ml_audit_access_user_at"),
                ],
            },
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
