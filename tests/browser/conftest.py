from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import django.contrib.admin
import pytest
from django.test import override_settings


@pytest.fixture(scope="session", autouse=True)
def _static_url_for_live_server() -> Iterator[None]:
    """tests.settings has no STATIC_URL; the live server's static-files handler needs one.

    Session-scoped and autouse, so it is in place before the (session-scoped) live server starts.
    Without django.contrib.staticfiles the live server serves STATIC_ROOT: point it at the
    admin's own static files so the screenshot has the admin's CSS.
    """
    admin_static = Path(django.contrib.admin.__file__).parent / "static"
    with override_settings(STATIC_URL="/static/", STATIC_ROOT=str(admin_static)):
        yield
