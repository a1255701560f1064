from django.apps import AppConfig


class MLAuditConfig(AppConfig):
    name = "ml_audit"
    label = "ml_audit"
    verbose_name = "ML audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks.
        from ml_audit import checks  # noqa: F401
        from ml_audit.conf import audit_settings

        if audit_settings.OTEL_ENABLED:
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider

            # Attach to a provider the project already configured. If there is none yet, wait
            # for the first prediction: the project may still install its own after Django
            # starts, and a global provider can only be set once.
            if isinstance(trace.get_tracer_provider(), TracerProvider):
                from ml_audit.otel.setup import install

                install()
