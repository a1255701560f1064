from django.apps import AppConfig


class MLAuditConfig(AppConfig):
    name = "ml_audit"
    label = "ml_audit"
    verbose_name = "ML audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks.
        from ml_audit import checks  # noqa: F401
