"""WSGI application of the ingest server process (``tests.ingest.server_wsgi:application``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.ingest.server_settings")

application = get_wsgi_application()
