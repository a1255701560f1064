"""Build an :class:`~ml_audit.records.ActorPayload` from a Django or DRF request.

>>> actor = actor_from_request(request)

- **Who:** an authenticated ``request.user`` is ``actor_type="user"`` with ``actor_id`` its
  primary key; an anonymous request has no actor (``None``) unless ``anonymous_actor_id`` is
  given, which makes it ``actor_type="other"``.
- **Tenant:** ``ML_AUDIT['TENANT_RESOLVER']`` (a callable or dotted path, ``request -> tenant
  id or None``) when set, else the user's ``tenant_id`` attribute when it has one.
- **Client IP:** ``REMOTE_ADDR``, unless that address is one of ``ML_AUDIT['TRUSTED_PROXIES']``:
  then ``X-Forwarded-For`` is read from the right, skipping trusted proxies, and the first
  untrusted address is the client. An ``X-Forwarded-For`` sent to a server whose peer is not a
  trusted proxy is ignored: anyone can send that header.
- **User agent:** ``User-Agent``, cut to 4096 characters.
- **Auth context:** the DRF authenticator's class name when there is one, and whether the user
  is staff — never credentials.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ml_audit.conf import audit_settings
from ml_audit.records import ActorPayload

__all__ = ["actor_from_request", "client_ip"]

MAX_USER_AGENT = 4096


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = value.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.9:443"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_ip(request: Any) -> str | None:
    """The client address, honouring ``TRUSTED_PROXIES`` (see the module docstring)."""
    meta = getattr(request, "META", {})
    peer = _parse(str(meta.get("REMOTE_ADDR", "")))
    if peer is None:
        return None
    trusted = audit_settings.TRUSTED_PROXIES

    def is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in trusted)

    if not trusted or not is_trusted(peer):
        return str(peer)
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR", ""))
    client = peer
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        address = _parse(hop)
        if address is None:
            break  # garbage: stop at the last address we could verify
        client = address
        if not is_trusted(address):
            break
    return str(client)


def actor_from_request(
    request: Any, *, anonymous_actor_id: str | None = None
) -> ActorPayload | None:
    """The actor of a Django ``HttpRequest`` or DRF ``Request`` (see the module docstring)."""
    user = getattr(request, "user", None)
    authenticated = bool(getattr(user, "is_authenticated", False))
    if authenticated:
        actor_type, actor_id = "user", str(user.pk)  # type: ignore[union-attr]
    elif anonymous_actor_id is not None:
        actor_type, actor_id = "other", anonymous_actor_id
    else:
        return None
    resolver = audit_settings.TENANT_RESOLVER
    if resolver is not None:
        tenant = resolver(request)
    else:
        tenant = getattr(user, "tenant_id", None) if authenticated else None
    meta = getattr(request, "META", {})
    user_agent = str(meta.get("HTTP_USER_AGENT", ""))[:MAX_USER_AGENT] or None
    auth_context: dict[str, Any] = {}
    authenticator = getattr(request, "successful_authenticator", None)
    if authenticator is not None:
        auth_context["authenticator"] = type(authenticator).__name__
    if authenticated:
        auth_context["is_staff"] = bool(getattr(user, "is_staff", False))
    return ActorPayload(
        actor_type=actor_type,
        actor_id=actor_id,
        tenant_id=None if tenant is None else str(tenant),
        ip_address=client_ip(request),
        user_agent=user_agent,
        auth_context=auth_context or None,
    )
