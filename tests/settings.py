"""Test settings: SQLite by default, PostgreSQL when DATABASE_URL is set.

A second alias, ``audit``, exists for the separate-audit-database tests: a second SQLite file,
or a second PostgreSQL database on the same server.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

SECRET_KEY = "ml-audit-tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]


def database_from_url(url: str, name_suffix: str = "") -> dict[str, Any]:
    parsed = urlparse(url)
    if parsed.scheme in {"postgres", "postgresql", "postgresql+psycopg"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) + name_suffix,
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
        }
    if parsed.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path or ":memory:"}
    raise ValueError(f"DATABASE_URL scheme {parsed.scheme!r} is not supported by the tests")


DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {
        "default": database_from_url(DATABASE_URL),
        "audit": database_from_url(DATABASE_URL, name_suffix="_audit"),
    }
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "audit": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "django_filters",
    "ml_audit",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# A durable-looking project directory, as in a startproject settings file: spool files go
# to BASE_DIR / "ml_audit_spool" unless a test says otherwise.
BASE_DIR = Path(tempfile.gettempdir()) / "ml-audit-tests"  # tests/conftest.py: one per test
ML_AUDIT: dict[str, Any] = {}
