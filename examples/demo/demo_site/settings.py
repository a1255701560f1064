"""Settings of the ml_audit demo site: embedded SQLite, DRF, the admin, OpenTelemetry.

The database file is ``ML_AUDIT_DEMO_DB`` (default: ``demo.sqlite3`` next to ``manage.py``).
Tracing is configured by the ``demo`` command (see ``demo_site.tracing``), not here.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("ML_AUDIT_DEMO_SECRET_KEY", "ml-audit-demo-only-not-a-secret")
#: DEMO SECRET, not a secret at all: the demo's ML_AUDIT["SUBJECT_KEY"] (override it with
#: $ML_AUDIT_DEMO_SUBJECT_KEY). Never copy it into a real deployment.
DEMO_SUBJECT_KEY = "ml-audit-demo-subject-key/DEMO-ONLY/not-a-secret"
#: DEMO SECRET as well: the key that authenticates seal heads (override it with
#: $ML_AUDIT_DEMO_SEAL_KEY). A real deployment keeps it outside the audit database.
DEMO_SEAL_KEY = "ml-audit-demo-seal-key/DEMO-ONLY/not-a-secret!"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
USE_TZ = True
TIME_ZONE = "UTC"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ML_AUDIT_DEMO_DB", str(BASE_DIR / "demo.sqlite3")),
        # The web server's threads and the audit writer share one file.
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "ml_audit",
    "demo_site",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "demo_site.urls"
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
STATIC_URL = "static/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "demo_site.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    # Error responses of audited views also say which prediction (audit record) failed.
    "EXCEPTION_HANDLER": "ml_audit.integrations.drf.exception_handler",
}

ML_AUDIT = {
    "ENVIRONMENT": "demo",
    # Who the caller's tenant is: the demo keeps it in a group named "tenant:<id>".
    "TENANT_RESOLVER": "demo_site.auth.tenant_of",
    # The safe default, spelled out: no prediction is served without its audit record.
    "ON_AUDIT_FAILURE": "fail",
    # Set by `manage.py demo --otlp-endpoint` (Phoenix: <origin>/redirects/traces/{trace_id}).
    "TRACE_URL_TEMPLATE": os.environ.get("ML_AUDIT_DEMO_TRACE_URL_TEMPLATE") or None,
    # Whom a prediction is about: the applicant id of the request (the view's
    # subject_field="applicant_id"), stored only as a pseudonymous subject reference. DEMO
    # SECRET: fixed and public so that every run finds the same subjects; a real deployment
    # reads it from its secret manager (at least 32 bytes) and never changes it.
    "SUBJECT_KEY": os.environ.get("ML_AUDIT_DEMO_SUBJECT_KEY") or DEMO_SUBJECT_KEY,
    # Tamper evidence (docs/tamper-evidence.md): the writer thread seals what is older than
    # SEAL_LAG_SECONDS every SEAL_INTERVAL_SECONDS; `demo --check` also seals at once and
    # runs the verifier. The admin's "Trail integrity" page shows the seals.
    "SEALING": True,
    "SEAL_KEY": os.environ.get("ML_AUDIT_DEMO_SEAL_KEY") or DEMO_SEAL_KEY,
    "SEAL_KEY_ID": "demo",
    "SEAL_LAG_SECONDS": 1,
    "SEAL_INTERVAL_SECONDS": 10,
    # The applicant id also arrives among the features: redacted there, like the PII.
    "REDACTION": {"DENYLIST": ["applicant_id"]},
    # Reason codes (docs/reason-codes.md): the explanation's contributions are log-odds of
    # default, so a positive one counts against the applicant; only declines and referrals
    # to a person get reasons (approvals get an empty list).
    "REASON_CODES": {
        "TOP": 3,
        "ADVERSE_SIGN": "+",
        "ADVERSE_OUTCOMES": ["decline", "review"],
        "FEATURES": {
            "debt_to_income": ("R01", "Debt is high relative to income"),
            "income_k": ("R02", "Income is low for the amount asked for"),
            "late_payments_12m": ("R03", "Payments were late in the last 12 months"),
            "credit_history_months": ("R04", "The credit history is short"),
            "loan_amount_k": ("R05", "The amount asked for is high"),
            "age": ("R06", "The applicant's age band has a higher default rate"),
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"ml_audit": {"handlers": ["console"], "level": "WARNING"}},
}
