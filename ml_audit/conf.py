"""Settings of ml_audit, read lazily from ``settings.ML_AUDIT``.

All keys are optional; the defaults are listed in :data:`DEFAULTS`::

    ML_AUDIT = {
        # Database alias used for every audit read and write. Point it at a separate alias
        # (with ``ml_audit.routers.MLAuditRouter`` in DATABASE_ROUTERS) to keep the audit trail
        # in its own database, under credentials that may only INSERT and SELECT.
        "DATABASE_ALIAS": "default",
        # Environment stored when a recording call does not name one ("prod", "staging", ...).
        "ENVIRONMENT": "",
        # Redaction policy; see ml_audit.redaction for every key. Merged over the seed-compatible
        # ``ML_AUDIT_REDACTION`` setting (keys given here win).
        "REDACTION": {},
        # Which payloads are redacted. "features" is always redacted; add "output", "metadata",
        # "auth_context" and/or "explanation" to redact those too.
        "REDACT_PAYLOADS": ["features"],
        # What a naive datetime passed as ``timestamp`` means: "reject" (raise InvalidRecord) or
        # "utc" (read it as UTC).
        "NAIVE_DATETIME_POLICY": "reject",
    }

Values are read when first used and cached; the cache is dropped on Django's
``setting_changed`` signal, so ``override_settings`` works in tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from ml_audit.exceptions import ConfigurationError
from ml_audit.redaction import RedactionPolicy

__all__ = ["DEFAULTS", "REDACTABLE_PAYLOADS", "MLAuditSettings", "audit_settings"]

#: Payloads that REDACT_PAYLOADS may name. Features are always redacted.
REDACTABLE_PAYLOADS = ("features", "output", "metadata", "auth_context", "explanation")

NAIVE_DATETIME_POLICIES = ("reject", "utc")

DEFAULTS: dict[str, Any] = {
    "DATABASE_ALIAS": "default",
    "ENVIRONMENT": "",
    "REDACTION": {},
    "REDACT_PAYLOADS": ["features"],
    "NAIVE_DATETIME_POLICY": "reject",
}


class MLAuditSettings:
    """Lazy, validated view of ``settings.ML_AUDIT``.

    Each property raises :class:`~ml_audit.exceptions.ConfigurationError` naming the setting
    when its value is invalid; :mod:`ml_audit.checks` reports the same problems at start-up.
    """

    @cached_property
    def user_settings(self) -> dict[str, Any]:
        raw = getattr(django_settings, "ML_AUDIT", None) or {}
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"settings.ML_AUDIT must be a dict, not {type(raw).__name__}.")
        unknown = sorted(set(raw) - set(DEFAULTS))
        if unknown:
            raise ConfigurationError(
                f"Unknown ML_AUDIT key(s): {', '.join(map(str, unknown))}. "
                f"Valid keys are: {', '.join(sorted(DEFAULTS))}."
            )
        return dict(raw)

    def _get(self, key: str) -> Any:
        return self.user_settings.get(key, DEFAULTS[key])

    @cached_property
    def DATABASE_ALIAS(self) -> str:
        alias = self._get("DATABASE_ALIAS")
        if not isinstance(alias, str) or not alias:
            raise ConfigurationError(
                "ML_AUDIT['DATABASE_ALIAS'] must be the name of an entry of settings.DATABASES."
            )
        if alias not in django_settings.DATABASES:
            raise ConfigurationError(
                f"ML_AUDIT['DATABASE_ALIAS'] is {alias!r}, which is not in settings.DATABASES "
                f"({', '.join(sorted(django_settings.DATABASES))}). Add that database or "
                "change the alias."
            )
        return alias

    @cached_property
    def ENVIRONMENT(self) -> str:
        env = self._get("ENVIRONMENT")
        if not isinstance(env, str):
            raise ConfigurationError("ML_AUDIT['ENVIRONMENT'] must be a string.")
        return env

    @cached_property
    def REDACT_PAYLOADS(self) -> frozenset[str]:
        value = self._get("REDACT_PAYLOADS")
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ConfigurationError(
                "ML_AUDIT['REDACT_PAYLOADS'] must be a list of payload names, e.g. "
                '["features", "output"].'
            )
        names = set(value)
        unknown = sorted(map(str, names - set(REDACTABLE_PAYLOADS)))
        if unknown:
            raise ConfigurationError(
                f"ML_AUDIT['REDACT_PAYLOADS'] names unknown payload(s) {', '.join(unknown)}; "
                f"choose from {', '.join(REDACTABLE_PAYLOADS)}."
            )
        return frozenset(names | {"features"})

    @cached_property
    def NAIVE_DATETIME_POLICY(self) -> str:
        value = self._get("NAIVE_DATETIME_POLICY")
        if value not in NAIVE_DATETIME_POLICIES:
            raise ConfigurationError(
                f"ML_AUDIT['NAIVE_DATETIME_POLICY'] must be one of "
                f"{', '.join(NAIVE_DATETIME_POLICIES)}, not {value!r}."
            )
        return str(value)

    @cached_property
    def redaction_config(self) -> dict[str, Any]:
        """The effective redaction config: ``ML_AUDIT_REDACTION`` overlaid by ``REDACTION``."""
        legacy = getattr(django_settings, "ML_AUDIT_REDACTION", None) or {}
        current = self._get("REDACTION") or {}
        for name, value in (("ML_AUDIT_REDACTION", legacy), ("ML_AUDIT['REDACTION']", current)):
            if not isinstance(value, Mapping):
                raise ConfigurationError(f"{name} must be a dict, not {type(value).__name__}.")
        return {**legacy, **current}

    @cached_property
    def redaction_policy(self) -> RedactionPolicy:
        return RedactionPolicy.from_config(self.redaction_config)

    def reload(self) -> None:
        """Forget every cached value; the next access reads the settings again."""
        for name in list(vars(self)):
            if name != "reload":
                del self.__dict__[name]


audit_settings = MLAuditSettings()


@receiver(setting_changed)
def _reload_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {"ML_AUDIT", "ML_AUDIT_REDACTION", "DATABASES"}:
        audit_settings.reload()
