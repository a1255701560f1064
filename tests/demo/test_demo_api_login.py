"""The demo's REST API from a browser: DRF's login page, then the browsable API.

The API answers anonymous visitors 401, so the way in from a browser is the login page the
demo's URLconf serves (``rest_framework.urls``), linked from the browsable API as "Log in".
Django's test client, on the demo's URLconf and middleware, with CSRF checks enforced.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from demo_site import settings as demo_settings
from demo_site.management.commands.demo import API_PATH, AUDITOR, LOGIN_PATH, Command
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-the-login-test"


@pytest.fixture
def browser(settings: Any) -> Client:
    settings.ROOT_URLCONF = "demo_site.urls"
    settings.MIDDLEWARE = demo_settings.MIDDLEWARE
    settings.STATIC_URL = demo_settings.STATIC_URL
    Command().create_users(PASSWORD)  # the demo's auditor, with the demo's permissions
    return Client(enforce_csrf_checks=True)


def log_in(browser: Client, password: str = PASSWORD) -> Any:
    page = browser.get(LOGIN_PATH)
    assert page.status_code == 200
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert token is not None, page.content[:2000]
    return browser.post(
        LOGIN_PATH,
        {"csrfmiddlewaretoken": token[1].decode(), "username": AUDITOR, "password": password},
    )


def test_the_demo_uses_session_authentication() -> None:
    classes = demo_settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]
    assert "rest_framework.authentication.SessionAuthentication" in classes


def test_the_browsable_api_links_to_the_login_page(browser: Client) -> None:
    response = browser.get(API_PATH, headers={"Accept": "text/html"})
    assert response.status_code in (401, 403)
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert re.search(f"<a href=['\"]{re.escape(LOGIN_PATH)}['\"]>Log in</a>", html), html


def test_a_session_logged_in_on_the_login_page_reads_the_api(browser: Client) -> None:
    page = browser.get(LOGIN_PATH)
    assert page.status_code == 200
    assert b'name="username"' in page.content
    assert b'name="password"' in page.content

    response = log_in(browser)
    assert response.status_code == 302
    assert response["Location"] == API_PATH

    for query, headers in (("?format=api", {}), ("", {"Accept": "text/html"})):
        api = browser.get(API_PATH + query, headers=headers)
        assert api.status_code == 200, api.content[:2000]
        assert api["Content-Type"].startswith("text/html")
        html = api.content.decode()
        assert "Log in" not in html
        assert AUDITOR in html  # the browsable API's user menu
        assert "&quot;results&quot;" in html  # the API's JSON, in the page
    assert browser.get(API_PATH, headers={"Accept": "application/json"}).status_code == 200


def test_a_wrong_password_does_not_open_the_api(browser: Client) -> None:
    response = log_in(browser, password="not-the-password")
    assert response.status_code == 200  # the form again, with its error
    assert browser.get(API_PATH, headers={"Accept": "text/html"}).status_code in (401, 403)
