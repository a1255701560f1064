"""The seals of the audit trail (``Seal``, ``SealMember``; see ``ml_audit.sealing``).

Both tables are append-only with the guard of 0005/0006: on PostgreSQL the existing
``ml_audit_forbid_mutation()`` function rejects UPDATE/DELETE (row) and TRUNCATE (statement)
unless ``ml_audit.store.allow_purge()`` is open (DELETE/TRUNCATE only); on SQLite UPDATE is
always rejected and DELETE unless the transaction holds an ``ml_audit_purge_permit`` row.
"""

import django.db.models.deletion
from django.db import migrations, models

SEAL_TABLES = ("ml_audit_seal", "ml_audit_sealmember")


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in SEAL_TABLES:
        if vendor == "postgresql":
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
    for table in SEAL_TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        elif vendor == "sqlite":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")


class Migration(migrations.Migration):
    dependencies = [
        ("ml_audit", "0007_ingest_credential"),
    ]

    operations = [
        migrations.CreateModel(
            name="Seal",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField()),
                ("previous_hash", models.CharField(max_length=64)),
                ("root", models.CharField(max_length=64)),
                ("leaves", models.PositiveBigIntegerField()),
                ("members_from", models.BigIntegerField()),
                ("members_to", models.BigIntegerField()),
                ("counts", models.JSONField(default=dict)),
                ("horizon", models.DateTimeField()),
                ("covered_from", models.DateTimeField(blank=True, null=True)),
                ("covered_to", models.DateTimeField(blank=True, null=True)),
                ("algorithm", models.CharField(max_length=32)),
                ("key_id", models.CharField(max_length=64)),
                ("mac", models.CharField(max_length=128)),
            ],
            options={
                "ordering": ("id",),
                "get_latest_by": "id",
            },
        ),
        migrations.CreateModel(
            name="SealMember",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("kind", models.PositiveSmallIntegerField()),
                ("row_id", models.UUIDField()),
                ("row_hash", models.CharField(max_length=64)),
                (
                    "seal",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="members",
                        to="ml_audit.seal",
                    ),
                ),
            ],
            options={
                "ordering": ("id",),
                "constraints": [
                    models.UniqueConstraint(
                        fields=("kind", "row_id"), name="ml_audit_sealmember_row"
                    )
                ],
            },
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
