"""Who asked for a prediction: :class:`ActorPayload`, validated as a recording call is.

Part of the records (:mod:`ml_audit.records` re-exports it, its public home): a room of its own
so that ``records`` stays readable. Nothing here touches the database or OpenTelemetry.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

from django.utils.ipv6 import clean_ipv6_address

from ml_audit.exceptions import InvalidRecord
from ml_audit.validation import (
    ACTOR_TYPES,
    MAX_ACTOR_ID,
    MAX_TENANT_ID,
    _check_identifier,
    _check_mapping,
    _check_text,
)

__all__ = ["ActorPayload"]


@dataclasses.dataclass(frozen=True)
class ActorPayload:
    """Who or what asked for a prediction.

    ``actor_type`` is one of :data:`ACTOR_TYPES`; ``actor_id`` and ``tenant_id`` may be given as
    ints (stored as strings). ``ip_address``, ``user_agent`` and ``auth_context`` describe this
    request and are stored on the prediction event, not on the shared actor row.
    ``auth_token`` is 0.2.0's name of ``auth_context``: given, it becomes ``auth_context``
    (and reads back as ``None``).
    """

    actor_type: str
    actor_id: str
    tenant_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    auth_context: Mapping[str, Any] | None = None
    auth_token: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.auth_token is not None:
            if self.auth_context is not None:
                raise InvalidRecord(
                    "actor.auth_token", "give auth_context or its 0.2.0 name auth_token, not both"
                )
            object.__setattr__(self, "auth_context", self.auth_token)
            object.__setattr__(self, "auth_token", None)
        if self.actor_type not in ACTOR_TYPES:
            raise InvalidRecord(
                "actor.actor_type",
                f"must be one of {', '.join(ACTOR_TYPES)}, not {self.actor_type!r}",
            )
        set_ = object.__setattr__
        set_(
            self,
            "actor_id",
            _check_identifier("actor.actor_id", self.actor_id, MAX_ACTOR_ID, optional=False),
        )
        tenant = _check_identifier("actor.tenant_id", self.tenant_id, MAX_TENANT_ID, optional=True)
        set_(self, "tenant_id", tenant or None)
        if self.ip_address is not None:
            try:
                address = ipaddress.ip_address(str(self.ip_address).strip())
            except ValueError as exc:
                raise InvalidRecord(
                    "actor.ip_address", f"{self.ip_address!r} is not an IPv4 or IPv6 address"
                ) from exc
            # Django's own IPv6 spelling, so the value reads back from every database unchanged.
            text = str(address) if address.version == 4 else clean_ipv6_address(str(address))
            set_(self, "ip_address", text)
        if self.user_agent is not None:
            set_(
                self,
                "user_agent",
                _check_text("actor.user_agent", self.user_agent, 4096, allow_empty=True),
            )
        if self.auth_context is not None:
            set_(
                self,
                "auth_context",
                _check_mapping("actor.auth_context", self.auth_context, optional=False),
            )

    @classmethod
    def stored(
        cls,
        *,
        actor_type: str,
        actor_id: str,
        tenant_id: str | None,
        ip_address: str | None,
        user_agent: str | None,
        auth_context: Mapping[str, Any] | None,
    ) -> ActorPayload:
        """The actor of a stored row, as stored: not validated again, so that reading back
        never refuses what was written (by this release or an earlier one)."""
        actor = object.__new__(cls)
        for name, value in (
            ("actor_type", actor_type),
            ("actor_id", actor_id),
            ("tenant_id", tenant_id),
            ("ip_address", ip_address),
            ("user_agent", user_agent),
            ("auth_context", auth_context),
            ("auth_token", None),
        ):
            object.__setattr__(actor, name, value)
        return actor

    @classmethod
    def coerce(cls, value: ActorPayload | Mapping[str, Any] | None) -> ActorPayload | None:
        """Accept an ``ActorPayload``, a mapping of its fields, or ``None``."""
        if value is None or isinstance(value, ActorPayload):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                names = ", ".join(sorted(map(str, unknown)))
                raise InvalidRecord("actor", f"unknown field(s) {names}")
            for required in ("actor_type", "actor_id"):
                if required not in value:
                    raise InvalidRecord(f"actor.{required}", "is required")
            return cls(**value)
        raise InvalidRecord("actor", f"must be an ActorPayload or a dict, not {type(value)}")

    def identity(self) -> dict[str, str]:
        """The fields that identify the shared actor row."""
        return {"type": self.actor_type, "id": self.actor_id, "tenant": self.tenant_id or ""}


def _actor_dict(actor: ActorPayload) -> dict[str, Any]:
    """The actor's fields for a spool file (``auth_token`` is only an input alias).

    Built by hand: ``dataclasses.asdict`` deep-copies, which costs microseconds on the request
    thread (the journal encodes every record there), and the values are immutable or only read.
    """
    return {
        "actor_type": actor.actor_type,
        "actor_id": actor.actor_id,
        "tenant_id": actor.tenant_id,
        "ip_address": actor.ip_address,
        "user_agent": actor.user_agent,
        "auth_context": actor.auth_context,
    }
