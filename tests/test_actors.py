"""actor_from_request: identity, tenant, client IP behind proxies, user agent."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory, override_settings

from ml_audit.actors import actor_from_request, client_ip
from ml_audit.exceptions import ConfigurationError


def tenant_of(request: object) -> str:
    return "tenant-from-resolver"


def request(user: object = None, **meta: Any) -> Any:
    req: Any = RequestFactory().get("/", **meta)
    req.user = user or AnonymousUser()
    return req


def user(pk: int = 5, **attrs: object) -> object:
    return SimpleNamespace(pk=pk, is_authenticated=True, is_staff=False, **attrs)


def test_anonymous_request_has_no_actor_unless_asked() -> None:
    assert actor_from_request(request()) is None
    actor = actor_from_request(request(), anonymous_actor_id="public-form")
    assert actor is not None
    assert (actor.actor_type, actor.actor_id) == ("other", "public-form")


def test_authenticated_user_with_tenant_attribute() -> None:
    actor = actor_from_request(
        request(user(pk=7, tenant_id=3), HTTP_USER_AGENT="ua/1", REMOTE_ADDR="192.0.2.1")
    )
    assert actor is not None
    assert (actor.actor_type, actor.actor_id, actor.tenant_id) == ("user", "7", "3")
    assert actor.ip_address == "192.0.2.1"
    assert actor.user_agent == "ua/1"
    assert actor.auth_context == {"is_staff": False}


@override_settings(ML_AUDIT={"TENANT_RESOLVER": "tests.test_actors.tenant_of"})
def test_tenant_resolver_setting_wins() -> None:
    actor = actor_from_request(request(user(tenant_id="ignored")))
    assert actor is not None
    assert actor.tenant_id == "tenant-from-resolver"


@override_settings(ML_AUDIT={"TENANT_RESOLVER": "tests.nowhere.resolver"})
def test_bad_tenant_resolver_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="TENANT_RESOLVER"):
        actor_from_request(request(user()))


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    req = request(REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert client_ip(req) == "203.0.113.5"


@override_settings(ML_AUDIT={"TRUSTED_PROXIES": ["10.0.0.0/8", "192.168.1.1"]})
@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("10.0.0.2", "198.51.100.9", "198.51.100.9"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.9, 192.168.1.1", "198.51.100.9"),
        ("203.0.113.5", "198.51.100.9", "203.0.113.5"),  # peer not trusted: header ignored
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", "garbage, 198.51.100.9", "198.51.100.9"),
        ("10.0.0.2", "198.51.100.9, garbage", "10.0.0.2"),
        ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
    ],
)
def test_trusted_proxies(remote: str, forwarded: str, expected: str) -> None:
    req = request(REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(req) == expected


def test_long_user_agent_is_cut_not_refused() -> None:
    actor = actor_from_request(request(user(), HTTP_USER_AGENT="x" * 10_000))
    assert actor is not None
    assert actor.user_agent == "x" * 4096


def test_drf_authenticator_name_is_recorded() -> None:
    req = request(user())
    req.successful_authenticator = type("TokenAuthentication", (), {})()
    actor = actor_from_request(req)
    assert actor is not None
    assert actor.auth_context == {"authenticator": "TokenAuthentication", "is_staff": False}
