"""Who is calling the demo's scoring endpoint: API keys, tenants, the actor of a prediction.

Callers authenticate with ``X-Api-Key: <username>.<signature>`` (an HMAC of the username with
the site's secret key: enough for a demo, no table to migrate). A user's tenant is the group
named ``tenant:<id>`` it belongs to; users in the group ``service`` are service accounts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from ml_audit.actors import actor_from_request
from ml_audit.records import ActorPayload

HEADER = "HTTP_X_API_KEY"
TENANT_PREFIX = "tenant:"
SERVICE_GROUP = "service"


def api_key_for(username: str) -> str:
    signature = hmac.new(settings.SECRET_KEY.encode(), username.encode(), hashlib.sha256)
    return f"{username}.{signature.hexdigest()[:32]}"


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[Any, str] | None:
        key = request.META.get(HEADER)
        if not key:
            return None
        username, _, _ = key.partition(".")
        if not hmac.compare_digest(key, api_key_for(username)):
            raise AuthenticationFailed("Invalid API key.")
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise AuthenticationFailed("Invalid API key.")
        return user, "api-key"

    def authenticate_header(self, request: Any) -> str:
        return "Api-Key"


def _group_names(user: Any) -> list[str]:
    cached = getattr(user, "_demo_groups", None)
    if cached is None:
        cached = list(user.groups.values_list("name", flat=True))
        user._demo_groups = cached
    return cached


def tenant_of(request: Any) -> str | None:
    """``ML_AUDIT['TENANT_RESOLVER']``: the tenant of the requesting user."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    for name in _group_names(user):
        if name.startswith(TENANT_PREFIX):
            return name[len(TENANT_PREFIX) :]
    return None


def actor_of(request: Any) -> ActorPayload | None:
    """The prediction's actor: ml_audit's default, named by username, services marked."""
    actor = actor_from_request(request)
    if actor is None:
        return None
    kind = "service" if SERVICE_GROUP in _group_names(request.user) else "user"
    return dataclasses.replace(actor, actor_type=kind, actor_id=request.user.get_username())
