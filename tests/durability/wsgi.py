"""WSGI entry point of the fault tests' gunicorn project (``tests.durability.wsgi:application``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.durability.child_settings")

application = get_wsgi_application()
