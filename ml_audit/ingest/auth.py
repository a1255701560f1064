"""Per-service tokens of the ingest endpoint: issue, revoke, and authenticate a request.

A token is ``mla_`` followed by 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored (:class:`~ml_audit.models.IngestCredential`): a token of that entropy needs no slow
password hash, and the hash is looked up by an index. Senders put it in
``Authorization: Bearer <token>`` or in ``x-ml-audit-token: <token>``.

This module imports no protobuf: the admin and the management command use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Iterable

from django.http import HttpRequest
from django.utils import timezone

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import InvalidRecord
from ml_audit.models import IngestCredential
from ml_audit.records import ActorPayload

__all__ = [
    "SHOWN",
    "TOKEN_HEADER",
    "TOKEN_PREFIX",
    "Sender",
    "authenticate",
    "check_service",
    "hash_token",
    "issue",
    "revoke",
    "token_from_request",
]

TOKEN_PREFIX = "mla_"
#: The header a sender may use instead of ``Authorization: Bearer``.
TOKEN_HEADER = "x-ml-audit-token"
_TOKEN_META = "HTTP_X_ML_AUDIT_TOKEN"
#: Characters of the token kept in clear (``token_prefix``) to tell tokens apart.
SHOWN = 12
#: Longer header values are not tokens of ours; refused without hashing them.
_MAX_TOKEN = 256


@dataclasses.dataclass(frozen=True)
class Sender:
    """The authenticated service of an ingest request."""

    credential_id: int
    service: str
    allowed_tenants: frozenset[str]

    def may_write(self, tenant_id: str) -> bool:
        """Whether this service may write a prediction of ``tenant_id`` ("": no tenant)."""
        return tenant_id in self.allowed_tenants


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_service(service_name: str, tenants: Iterable[str]) -> tuple[str, list[str]]:
    """The service name and tenant ids as an actor stores them; ``InvalidRecord`` (a
    ``ValueError``) naming the first one that cannot be stored."""
    tenant_list = sorted({str(tenant) for tenant in tenants})
    actor = ActorPayload("service", service_name)
    for tenant in tenant_list:
        if tenant:
            ActorPayload("service", service_name, tenant_id=tenant)
    return actor.actor_id, tenant_list


def issue(
    service_name: str,
    tenants: Iterable[str],
    *,
    description: str = "",
    using: str | None = None,
) -> tuple[IngestCredential, str]:
    """A new credential of ``service_name`` and its clear token (shown once, never stored).

    ``tenants``: the tenant ids it may write; ``""`` among them allows predictions without a
    tenant. Raises ``InvalidRecord`` for a service name or tenant id an actor cannot have.
    """
    service, tenant_list = check_service(service_name, tenants)
    if len(description) > 255:
        raise InvalidRecord("description", "must be at most 255 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    credential = IngestCredential(
        service_name=service,
        allowed_tenants=tenant_list,
        description=description,
        token_hash=hash_token(token),
        token_prefix=token[:SHOWN],
    )
    credential.save(using=resolve_alias(using))
    return credential, token


def assign_token(credential: IngestCredential) -> str:
    """Give an unsaved credential (the admin's add form) a new token; return it in clear."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    credential.token_hash = hash_token(token)
    credential.token_prefix = token[:SHOWN]
    return token


def revoke(credential: IngestCredential, *, using: str | None = None) -> bool:
    """Revoke ``credential`` from now on; False when it already was revoked."""
    if credential.revoked_at is not None:
        return False
    credential.revoked_at = timezone.now()
    alias = using or credential._state.db or resolve_alias(None)
    updated = (
        IngestCredential.objects.using(alias)
        .filter(pk=credential.pk, revoked_at__isnull=True)
        .update(revoked_at=credential.revoked_at)
    )
    return updated == 1


def token_from_request(request: HttpRequest) -> str | None:
    """The token a request carries (``Authorization: Bearer`` first), or None."""
    header = str(request.META.get("HTTP_AUTHORIZATION", ""))
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = str(request.META.get(_TOKEN_META, "")).strip()
    return value or None


def authenticate(token: str | None, *, using: str | None = None) -> Sender | None:
    """The service a token belongs to, or None (no token, an unknown or revoked one).

    Database errors propagate (the caller answers 503: a sender must retry, not give up).
    """
    if not token or len(token) > _MAX_TOKEN or not token.startswith(TOKEN_PREFIX):
        return None
    row = (
        IngestCredential.objects.using(resolve_alias(using))
        .filter(token_hash=hash_token(token), revoked_at__isnull=True)
        .values_list("pk", "service_name", "allowed_tenants")
        .first()
    )
    if row is None:
        return None
    pk, service, tenants = row
    entries = tenants if isinstance(tenants, list) else []
    allowed = frozenset(t for t in entries if isinstance(t, str))
    return Sender(credential_id=pk, service=service, allowed_tenants=allowed)
