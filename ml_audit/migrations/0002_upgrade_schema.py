"""From 0.2.0's schema towards ours, part 1: new columns, old indexes dropped, limits widened.

Only additions and relaxations here; ``0003_upgrade_data`` fills the new columns of rows that
0.2.0 wrote, and ``0004_upgrade_constraints`` then removes what 0.2.0 kept elsewhere and adds
our constraints. A fresh install runs the same steps on empty tables.
"""

from django.db import migrations, models

import ml_audit.records


def _text(max_length, **kwargs):
    return models.CharField(blank=True, default="", max_length=max_length, **kwargs)


class Migration(migrations.Migration):
    dependencies = [("ml_audit", "0001_initial")]

    operations = [
        # ModelVersion: UUIDv7 for new rows, our lengths, no per-column indexes.
        migrations.AlterUniqueTogether(name="modelversion", unique_together=set()),
        migrations.RemoveIndex(model_name="modelversion", name="ml_audit_mo_model_n_4bf050_idx"),
        migrations.AlterField(
            model_name="modelversion",
            name="id",
            field=models.UUIDField(
                default=ml_audit.records.uuid7, editable=False, primary_key=True, serialize=False
            ),
        ),
        migrations.AlterField(
            model_name="modelversion", name="model_name", field=models.CharField(max_length=255)
        ),
        migrations.AlterField(
            model_name="modelversion", name="version", field=models.CharField(max_length=100)
        ),
        migrations.AlterField(model_name="modelversion", name="framework", field=_text(100)),
        migrations.AlterField(model_name="modelversion", name="build_id", field=_text(255)),
        migrations.AlterField(model_name="modelversion", name="commit_hash", field=_text(255)),
        migrations.AddConstraint(
            model_name="modelversion",
            constraint=models.UniqueConstraint(
                fields=("model_name", "version"), name="ml_audit_model_name_version"
            ),
        ),
        # RequestingActor: no per-column indexes (the identity constraint of 0004 serves).
        migrations.RemoveIndex(model_name="requestingactor", name="ml_audit_re_actor_t_c4a78e_idx"),
        migrations.RemoveIndex(model_name="requestingactor", name="ml_audit_re_tenant__f6ee55_idx"),
        migrations.AlterField(
            model_name="requestingactor",
            name="id",
            field=models.UUIDField(
                default=ml_audit.records.uuid7, editable=False, primary_key=True, serialize=False
            ),
        ),
        migrations.AlterField(
            model_name="requestingactor",
            name="actor_type",
            field=models.CharField(
                choices=[
                    ("user", "User"),
                    ("service", "Service"),
                    ("api_key", "Api Key"),
                    ("job", "Job"),
                    ("other", "Other"),
                ],
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="requestingactor", name="actor_id", field=models.CharField(max_length=255)
        ),
        migrations.AlterField(model_name="requestingactor", name="tenant_id", field=_text(255)),
        # PredictionEvent: the columns 0.2.0 did not have.
        migrations.AddField(model_name="predictionevent", name="span_id", field=_text(16)),
        migrations.AddField(model_name="predictionevent", name="parent_span_id", field=_text(16)),
        migrations.AddField(model_name="predictionevent", name="correlation_id", field=_text(255)),
        migrations.AddField(model_name="predictionevent", name="tenant_id", field=_text(255)),
        migrations.AddField(
            model_name="predictionevent",
            name="client_ip",
            field=models.GenericIPAddressField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="predictionevent",
            name="user_agent",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="predictionevent",
            name="auth_context",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="predictionevent", name="redaction", field=models.JSONField(default=dict)
        ),
        migrations.AddField(model_name="predictionevent", name="error_type", field=_text(255)),
        migrations.AddField(
            model_name="predictionevent",
            name="error_message",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="predictionevent",
            name="content_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        # Explanation: revisions (0.2.0's one explanation per prediction is revision 1).
        migrations.AddField(
            model_name="explanation",
            name="revision",
            field=models.PositiveIntegerField(default=1),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="explanation",
            name="content_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
    ]
