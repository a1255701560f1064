"""Credentials of the OTLP ingest endpoint (``IngestCredential``, see ``ml_audit.ingest``).

A plain table, not append-only: a credential is revoked by setting ``revoked_at``. Only the
SHA-256 of each token is stored.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ml_audit", "0006_access_log"),
    ]

    operations = [
        migrations.CreateModel(
            name="IngestCredential",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("service_name", models.CharField(max_length=255)),
                ("allowed_tenants", models.JSONField(blank=True, default=list)),
                ("description", models.CharField(blank=True, default="", max_length=255)),
                ("token_hash", models.CharField(editable=False, max_length=64, unique=True)),
                ("token_prefix", models.CharField(editable=False, max_length=16)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("revoked_at", models.DateTimeField(blank=True, editable=False, null=True)),
            ],
            options={
                "ordering": ("service_name", "-created_at"),
            },
        ),
    ]
