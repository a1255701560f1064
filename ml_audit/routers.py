"""Database router that sends every ml_audit model to ``ML_AUDIT['DATABASE_ALIAS']``.

Add it to ``DATABASE_ROUTERS`` when the audit trail lives in its own database::

    DATABASE_ROUTERS = ["ml_audit.routers.MLAuditRouter"]
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from ml_audit.conf import audit_settings

APP_LABEL = "ml_audit"


class MLAuditRouter:
    """Reads and writes of ml_audit models go to the audit alias; they migrate only there."""

    def _is_audit(self, model: type[Model]) -> bool:
        return model._meta.app_label == APP_LABEL

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return audit_settings.DATABASE_ALIAS if self._is_audit(model) else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return audit_settings.DATABASE_ALIAS if self._is_audit(model) else None

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        audit1, audit2 = self._is_audit(type(obj1)), self._is_audit(type(obj2))
        if audit1 or audit2:
            return audit1 and audit2
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label == APP_LABEL:
            return db == audit_settings.DATABASE_ALIAS
        return None
