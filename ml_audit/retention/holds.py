"""Legal holds: rows no purge may remove while a hold is in force.

A hold is placed by one append-only :class:`~ml_audit.models.LegalHold` row and released by a
second that names it; neither is ever edited. A placement scopes by tenant, actor, model,
external prediction ids and a time range (inclusive at both ends); every criterion that is set
must match, and a placement without criteria holds everything. Explanations (and later
reviews, outcomes) are held with their prediction. The access log is held by placements that
scope by time only (or by nothing): its rows have no tenant, actor or model of their own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from ml_audit import records
from ml_audit.conf import resolve_alias
from ml_audit.exceptions import InvalidRecord
from ml_audit.retention_models import HoldAction, LegalHold

__all__ = [
    "InvalidHold",
    "access_held_q",
    "active_holds",
    "build_placement",
    "build_release",
    "held_q",
    "place_hold",
    "release_hold",
]

MAX_HOLD_PREDICTION_IDS = 100_000


class InvalidHold(InvalidRecord):
    """A hold or a release that cannot be appended (``str()``: ``"hold: <why>"``)."""

    def __init__(self, message: str) -> None:
        super().__init__("hold", message)


def place_hold(
    *,
    using: str | None = None,
    **scope: Any,
) -> LegalHold:
    """Place a legal hold (append one ``place`` row) and return it.

    Takes the arguments of :func:`build_placement`: ``reason`` and ``created_by`` (why, who),
    the scope (``tenant_id``, ``actor_type``/``actor_id``, ``model_name``, ``prediction_ids``,
    ``time_from``/``time_to``) or ``everything=True``, and a ``reference``.
    """
    hold = build_placement(**scope)
    hold.save(using=resolve_alias(using))
    return hold


def build_placement(
    *,
    reason: str,
    created_by: str,
    tenant_id: str = "",
    actor_type: str = "",
    actor_id: str = "",
    model_name: str = "",
    prediction_ids: Iterable[str] = (),
    time_from: dt.datetime | None = None,
    time_to: dt.datetime | None = None,
    reference: str = "",
    everything: bool = False,
) -> LegalHold:
    """A validated, unsaved placement (the admin's form shows its errors before saving).

    At least one scope criterion is required unless ``everything=True`` (a hold on the whole
    trail). ``actor_type`` narrows ``actor_id`` and needs it. Raises ``InvalidRecord``.
    """
    reason, created_by = _who_why(reason, created_by)
    ids = sorted({str(value) for value in prediction_ids})
    if len(ids) > MAX_HOLD_PREDICTION_IDS:
        raise InvalidHold(f"a hold names at most {MAX_HOLD_PREDICTION_IDS} prediction ids")
    if any(not value or len(value) > records.MAX_PREDICTION_ID for value in ids):
        raise InvalidHold("prediction ids must be non-empty external prediction ids")
    if actor_type and not actor_id:
        raise InvalidHold("actor_type narrows actor_id: give actor_id too")
    for name, value in (("time_from", time_from), ("time_to", time_to)):
        if value is not None and timezone.is_naive(value):
            raise InvalidHold(f"{name} must be timezone-aware")
    if time_from is not None and time_to is not None and time_to < time_from:
        raise InvalidHold("time_to is before time_from")
    scoped = any((tenant_id, actor_id, model_name, ids, time_from, time_to))
    if scoped == everything:
        raise InvalidHold(
            "a hold on everything has no scope criteria"
            if everything
            else "give at least one scope criterion (tenant, actor, model, prediction ids, "
            "time range), or everything=True to hold the whole trail"
        )
    hold = LegalHold(
        action=HoldAction.PLACE,
        tenant_id=tenant_id,
        actor_type=actor_type,
        actor_id=actor_id,
        model_name=model_name,
        prediction_ids=ids,
        time_from=time_from,
        time_to=time_to,
        reference=reference.strip(),
        reason=reason,
        created_by=created_by,
        created_at=timezone.now(),
    )
    hold.full_clean(exclude=["releases", "prediction_ids"])
    return hold


def release_hold(
    hold: LegalHold | uuid.UUID | str,
    *,
    reason: str,
    created_by: str,
    using: str | None = None,
) -> LegalHold:
    """Release a placed hold (append one ``release`` row naming it) and return the release.

    Raises ``InvalidRecord`` when ``hold`` is not a placement, or is released already.
    """
    alias = resolve_alias(using)
    with transaction.atomic(using=alias):
        release = build_release(hold, reason=reason, created_by=created_by, using=alias)
        release.save(using=alias)
    return release


def build_release(
    hold: LegalHold | uuid.UUID | str, *, reason: str, created_by: str, using: str | None = None
) -> LegalHold:
    """A validated, unsaved release of ``hold``; inside a transaction, the placement is locked
    (where the database can) so that two releases cannot both pass."""
    reason, created_by = _who_why(reason, created_by)
    alias = resolve_alias(using)
    hold_id = hold.pk if isinstance(hold, LegalHold) else _uuid(hold)
    placements = LegalHold.objects.using(alias).filter(pk=hold_id)
    if _locks(alias) and connections[alias].in_atomic_block:
        placements = placements.select_for_update()
    placed = placements.first()
    if placed is None or placed.action != HoldAction.PLACE:
        raise InvalidHold(f"no placed hold {hold_id}")
    if LegalHold.objects.using(alias).filter(releases=placed).exists():
        raise InvalidHold(f"hold {hold_id} is released already")
    return LegalHold(
        action=HoldAction.RELEASE,
        releases=placed,
        reason=reason,
        created_by=created_by,
        created_at=timezone.now(),
    )


def active_holds(using: str | None = None) -> list[LegalHold]:
    """The placements in force (placed and not released), oldest first."""
    alias = resolve_alias(using)
    return list(
        LegalHold.objects.using(alias)
        .filter(action=HoldAction.PLACE, released_by__isnull=True)
        .order_by("created_at", "id")
    )


def held_q(holds: Sequence[LegalHold]) -> Q | None:
    """A ``Q`` on ``PredictionEvent`` matching every prediction some hold covers; ``None``
    when there are no holds."""
    if not holds:
        return None
    return _any([_prediction_q(hold) for hold in holds])


def access_held_q(holds: Sequence[LegalHold]) -> Q | None:
    """A ``Q`` on ``AccessLog`` for the rows holds cover (time-only or whole-trail holds);
    ``None`` when no hold reaches the access log."""
    reaching = [hold for hold in holds if _time_only(hold)]
    if not reaching:
        return None
    return _any([_time_q(hold, "accessed_at") for hold in reaching])


def _any(conditions: list[Q]) -> Q:
    """The disjunction of ``conditions``; an empty ``Q()`` (a hold on everything) matches every
    row, which ``Q() | ...`` would silently drop."""
    if any(not condition for condition in conditions):
        return Q(pk__isnull=False)
    matched = conditions[0]
    for condition in conditions[1:]:
        matched |= condition
    return matched


def _prediction_q(hold: LegalHold) -> Q:
    q = _time_q(hold, "timestamp")
    if hold.tenant_id:
        q &= Q(tenant_id=hold.tenant_id)
    if hold.actor_id:
        q &= Q(actor__actor_id=hold.actor_id)
        if hold.actor_type:
            q &= Q(actor__actor_type=hold.actor_type)
    if hold.model_name:
        q &= Q(model__model_name=hold.model_name)
    if hold.prediction_ids:
        q &= Q(prediction_id__in=list(hold.prediction_ids))
    return q


def _time_q(hold: LegalHold, column: str) -> Q:
    q = Q()
    if hold.time_from is not None:
        q &= Q(**{f"{column}__gte": hold.time_from})
    if hold.time_to is not None:
        q &= Q(**{f"{column}__lte": hold.time_to})
    return q


def _time_only(hold: LegalHold) -> bool:
    return not (hold.tenant_id or hold.actor_id or hold.model_name or hold.prediction_ids)


def _who_why(reason: str, created_by: str) -> tuple[str, str]:
    reason, created_by = (reason or "").strip(), (created_by or "").strip()
    if not reason:
        raise InvalidHold("a hold needs a reason (why)")
    if not created_by:
        raise InvalidHold("a hold needs created_by (who)")
    if len(created_by) > 255:
        raise InvalidHold("created_by is longer than 255 characters")
    return reason, created_by


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError as exc:
        raise InvalidHold(f"not a hold id: {value!r}") from exc


def _locks(alias: str) -> bool:
    return bool(connections[alias].features.has_select_for_update)
