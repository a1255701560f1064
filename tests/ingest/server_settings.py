"""Django settings of the ingest server process (gunicorn) of the real-sender tests and of
``benchmarks/bench_ingest_http.py``.

``ML_AUDIT_INGEST_DB``: the database URL (``postgres://...`` or ``sqlite:////path``).
``ML_AUDIT_INGEST_SETTINGS``: JSON of ``ML_AUDIT`` (optional).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tests.settings import database_from_url

SECRET_KEY = "ml-audit-ingest-server-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DATABASES = {"default": database_from_url(os.environ["ML_AUDIT_INGEST_DB"])}
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "ml_audit"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.ingest.server_urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
BASE_DIR = Path(tempfile.gettempdir()) / "ml-audit-ingest-server"
ML_AUDIT: dict[str, Any] = json.loads(os.environ.get("ML_AUDIT_INGEST_SETTINGS") or "{}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"ml_audit": {"handlers": ["stderr"], "level": "INFO"}},
}
