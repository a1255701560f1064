"""From 0.2.0's schema to ours, part 3: what 0.2.0 kept elsewhere removed, our constraints added."""

import django.db.models.deletion
from django.db import migrations, models

import ml_audit.records


class Migration(migrations.Migration):
    dependencies = [
        ("ml_audit", "0003_upgrade_data"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="explanation",
            options={"ordering": ("prediction", "revision")},
        ),
        migrations.AlterModelOptions(
            name="modelversion",
            options={"ordering": ("model_name", "version")},
        ),
        migrations.AlterModelOptions(
            name="predictionevent",
            options={"get_latest_by": "timestamp", "ordering": ("-timestamp", "-id")},
        ),
        migrations.AlterModelOptions(
            name="requestingactor",
            options={"ordering": ("actor_type", "actor_id")},
        ),
        migrations.RemoveIndex(
            model_name="explanation",
            name="ml_audit_ex_method_b156a9_idx",
        ),
        migrations.RemoveIndex(
            model_name="explanation",
            name="ml_audit_ex_status_f07b79_idx",
        ),
        migrations.RemoveIndex(
            model_name="predictionevent",
            name="ml_audit_pr_timesta_3b52b1_idx",
        ),
        migrations.RemoveIndex(
            model_name="predictionevent",
            name="ml_audit_pr_confide_d075b1_idx",
        ),
        migrations.RemoveIndex(
            model_name="predictionevent",
            name="ml_audit_pr_decisio_c16462_idx",
        ),
        migrations.RemoveIndex(
            model_name="predictionevent",
            name="ml_audit_pr_status_acb91b_idx",
        ),
        migrations.RemoveIndex(
            model_name="predictionevent",
            name="ml_audit_pr_environ_30af0b_idx",
        ),
        migrations.RemoveField(
            model_name="predictionevent",
            name="created_at",
        ),
        migrations.RemoveField(
            model_name="predictionevent",
            name="updated_at",
        ),
        migrations.RemoveField(
            model_name="requestingactor",
            name="auth_context",
        ),
        migrations.RemoveField(
            model_name="requestingactor",
            name="ip_address",
        ),
        migrations.RemoveField(
            model_name="requestingactor",
            name="updated_at",
        ),
        migrations.RemoveField(
            model_name="requestingactor",
            name="user_agent",
        ),
        migrations.AlterField(
            model_name="explanation",
            name="created_at",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="explanation",
            name="generated_at",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="explanation",
            name="id",
            field=models.UUIDField(
                default=ml_audit.records.uuid7, editable=False, primary_key=True, serialize=False
            ),
        ),
        migrations.AlterField(
            model_name="explanation",
            name="method",
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name="explanation",
            name="method_version",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AlterField(
            model_name="explanation",
            name="payload",
            field=models.JSONField(default=dict),
        ),
        migrations.AlterField(
            model_name="explanation",
            name="prediction",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="explanations",
                to="ml_audit.predictionevent",
            ),
        ),
        migrations.AlterField(
            model_name="explanation",
            name="status",
            field=models.CharField(
                choices=[
                    ("success", "Success"),
                    ("failed", "Failed"),
                    ("partial", "Partial"),
                    ("pending", "Pending"),
                ],
                default="success",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="explanation",
            name="summary_text",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="config_snapshot",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="predictions",
                to="ml_audit.requestingactor",
            ),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="confidence",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="decision_outcome",
            field=models.CharField(blank=True, default="", max_length=128),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="environment",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="features",
            field=models.JSONField(default=dict),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="id",
            field=models.UUIDField(
                default=ml_audit.records.uuid7, editable=False, primary_key=True, serialize=False
            ),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="input_fingerprint",
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="latency_ms",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="metadata",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="model",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="predictions",
                to="ml_audit.modelversion",
            ),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="output",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="prediction_id",
            field=models.CharField(max_length=255, unique=True),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="status",
            field=models.CharField(
                choices=[("success", "Success"), ("failed", "Failed"), ("partial", "Partial")],
                default="success",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="timestamp",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="predictionevent",
            name="trace_id",
            field=models.CharField(blank=True, default="", max_length=32),
        ),
        migrations.AddIndex(
            model_name="predictionevent",
            index=models.Index(fields=["timestamp", "id"], name="ml_audit_pred_ts_id"),
        ),
        migrations.AddIndex(
            model_name="predictionevent",
            index=models.Index(fields=["model", "timestamp"], name="ml_audit_pred_model_ts"),
        ),
        migrations.AddIndex(
            model_name="predictionevent",
            index=models.Index(fields=["tenant_id", "timestamp"], name="ml_audit_pred_tenant_ts"),
        ),
        migrations.AddIndex(
            model_name="predictionevent",
            index=models.Index(
                condition=models.Q(("trace_id", ""), _negated=True),
                fields=["trace_id"],
                name="ml_audit_pred_trace",
            ),
        ),
        migrations.AddConstraint(
            model_name="explanation",
            constraint=models.UniqueConstraint(
                fields=("prediction", "revision"), name="ml_audit_expl_prediction_revision"
            ),
        ),
        migrations.AddConstraint(
            model_name="explanation",
            constraint=models.CheckConstraint(
                condition=models.Q(("revision__gte", 1)), name="ml_audit_expl_revision"
            ),
        ),
        migrations.AddConstraint(
            model_name="predictionevent",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("confidence__isnull", True),
                    models.Q(("confidence__gte", 0), ("confidence__lte", 1)),
                    _connector="OR",
                ),
                name="ml_audit_pred_confidence_unit",
            ),
        ),
        migrations.AddConstraint(
            model_name="predictionevent",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("latency_ms__isnull", True), ("latency_ms__gte", 0), _connector="OR"
                ),
                name="ml_audit_pred_latency_nonneg",
            ),
        ),
        migrations.AddConstraint(
            model_name="predictionevent",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ("success", "failed", "partial"))),
                name="ml_audit_pred_status_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="requestingactor",
            constraint=models.UniqueConstraint(
                fields=("actor_type", "actor_id", "tenant_id"), name="ml_audit_actor_identity"
            ),
        ),
    ]
