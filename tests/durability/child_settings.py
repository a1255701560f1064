"""Django settings of the fault tests' child processes (recorder, next writer, gunicorn).

Everything that differs between trials comes from the environment, set by ``harness.py``:

``ML_AUDIT_DURABILITY_DB``
    URL of the scratch PostgreSQL database (possibly through the test's TCP proxy).
``ML_AUDIT_DURABILITY_SPOOL``
    The trial's ``ML_AUDIT['SPOOL_DIR']``.
``ML_AUDIT_DURABILITY_WRITE_MODE``
    ``ML_AUDIT['WRITE_MODE']`` when set (else the default, ``"journal"``).
``ML_AUDIT_DURABILITY_JOURNAL_FSYNC``
    ``"1"``: ``ML_AUDIT['JOURNAL_FSYNC'] = True``.

Every other ``ML_AUDIT`` key keeps its default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.settings import database_from_url

SECRET_KEY = "ml-audit-durability-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

DATABASES = {"default": database_from_url(os.environ["ML_AUDIT_DURABILITY_DB"])}

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "ml_audit",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.durability.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
}

_SPOOL = Path(os.environ["ML_AUDIT_DURABILITY_SPOOL"])
BASE_DIR = _SPOOL.parent
ML_AUDIT: dict[str, Any] = {"SPOOL_DIR": str(_SPOOL)}
if os.environ.get("ML_AUDIT_DURABILITY_WRITE_MODE"):
    ML_AUDIT["WRITE_MODE"] = os.environ["ML_AUDIT_DURABILITY_WRITE_MODE"]
if os.environ.get("ML_AUDIT_DURABILITY_JOURNAL_FSYNC") == "1":
    ML_AUDIT["JOURNAL_FSYNC"] = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"ml_audit": {"handlers": ["stderr"], "level": "INFO"}},
}
