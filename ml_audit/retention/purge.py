"""Purging what is past retention and under no legal hold, and leaving proof of it.

:func:`plan_purge` says what would go, per (model, tenant) group and for the access log;
:func:`run_purge` removes it in batches of ``PURGE_BATCH_SIZE`` rows, one short transaction each,
so that recording is never blocked for long (deletes take row locks only; inserts never wait
for them). Each batch transaction:

1. on PostgreSQL, ``SET LOCAL ROLE`` to the purge role when the connected role is a member
   of it (the trigger opens the hatch to members only);
2. selects the oldest rows of the group past the cutoff and under no hold, with their
   dependents (:data:`DEPENDENTS`: reason codes, reviews, outcomes, explanation revisions);
3. appends one :class:`~ml_audit.models.PurgeRecord` (counts, time range, the Merkle root of
   the removed rows' leaves as the seals compute them, the rule and holds, who ran it) and one
   :class:`~ml_audit.models.PurgedRow` per removed row;
4. deletes the rows through :func:`ml_audit.store.allow_purge`, the one escape hatch.

With a sealing key configured, pending rows are sealed before the purge (so every removed row
is sealed and accounted for by its tombstone) and after it (the purge records).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, models, transaction
from django.db.models import Count, Q
from django.utils import timezone

from ml_audit import store
from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.decision_hashes import OUTCOME, REASON_CODES, REVIEW, DecisionTable
from ml_audit.decision_models import Outcome, ReasonCodes, Review
from ml_audit.models import AccessLog, Explanation, PredictionEvent
from ml_audit.retention.holds import access_held_q, active_holds, held_q
from ml_audit.retention.policy import RetentionPolicy, Rule
from ml_audit.retention_models import LegalHold, PurgedRow, PurgeRecord
from ml_audit.sealing.merkle import MerkleBuilder, leaf_data
from ml_audit.sealing.tables import ACCESS, ACCESS_COLUMNS, EXPLANATION, PREDICTION, access_hash

__all__ = ["DEPENDENTS", "Dependent", "Group", "PurgeResult", "plan_purge", "run_purge"]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Dependent:
    """Rows that belong to a prediction and go with it: their model, the foreign key to the
    prediction, their ``SealMember`` kind and the name used in counts. ``table``: for rows
    that store no hash of their own, where their columns and row hash come from
    (:mod:`ml_audit.decision_hashes`); without it the row's ``content_hash`` is its hash."""

    name: str
    kind: int
    model: type[models.Model]
    fk: str
    table: DecisionTable | None = None


#: What goes with a purged prediction, children before parents (reason codes name an
#: explanation revision): each is deleted in the prediction's batch, through the same hatch,
#: with a tombstone of its kind and a count under its name.
DEPENDENTS: list[Dependent] = [
    Dependent(REASON_CODES.name, REASON_CODES.kind, ReasonCodes, "prediction", REASON_CODES),
    Dependent(REVIEW.name, REVIEW.kind, Review, "prediction", REVIEW),
    Dependent(OUTCOME.name, OUTCOME.kind, Outcome, "prediction", OUTCOME),
    Dependent("explanation", EXPLANATION.kind, Explanation, "prediction"),
]


@dataclass
class Group:
    """Rows of one (model, tenant) group, or the access log, past their period."""

    target: str  # "prediction" or "access"
    model_name: str
    tenant_id: str
    rule: Rule
    cutoff: dt.datetime
    count: int = 0  # past retention and under no hold: what a purge removes
    held: int = 0  # past retention but held

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "model_name": self.model_name,
            "tenant_id": self.tenant_id,
            "rule": self.rule.source,
            "days": self.rule.days,
            "cutoff": self.cutoff.isoformat(),
            "count": self.count,
            "held": self.held,
        }


@dataclass
class PurgeResult:
    run_id: uuid.UUID
    groups: list[Group]
    counts: dict[str, int] = field(default_factory=dict)
    records: list[PurgeRecord] = field(default_factory=list)
    executed: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# ------------------------------------------------------------------------------ planning


def plan_purge(
    using: str | None = None,
    *,
    now: dt.datetime | None = None,
    policy: RetentionPolicy | None = None,
) -> list[Group]:
    """What a purge would remove now, per (model, tenant) and for the access log; groups with
    nothing to remove but held rows are listed too."""
    alias = resolve_alias(using)
    policy = policy if policy is not None else audit_settings.RETENTION
    policy.check()
    now = now or timezone.now()
    holds = active_holds(alias)
    groups: list[Group] = []
    shortest = policy.shortest_days
    if shortest is not None:
        candidates = (
            PredictionEvent.objects.using(alias)
            .filter(timestamp__lt=now - dt.timedelta(days=shortest))
            .values_list("model__model_name", "tenant_id")
            .distinct()
            .order_by("model__model_name", "tenant_id")
        )
        for model_name, tenant_id in candidates:
            rule = policy.rule_for(model_name, tenant_id)
            cutoff = rule.cutoff(now)
            if cutoff is None:
                continue
            group = Group("prediction", model_name, tenant_id, rule, cutoff)
            _count(group, _prediction_rows(alias, group), held_q(holds))
            if group.count or group.held:
                groups.append(group)
    access_cutoff = policy.access_rule().cutoff(now)
    if access_cutoff is not None:
        group = Group("access", "", "", policy.access_rule(), access_cutoff)
        _count(group, _access_rows(alias, group), access_held_q(holds))
        if group.count or group.held:
            groups.append(group)
    return groups


def _count(group: Group, rows: models.QuerySet[Any], held: Q | None) -> None:
    if held is None:
        group.count = rows.count()
        return
    counted = rows.aggregate(held=Count("pk", filter=held), total=Count("pk"))
    group.held = counted["held"]
    group.count = counted["total"] - group.held


def _prediction_rows(alias: str, group: Group) -> models.QuerySet[Any]:
    return PredictionEvent.objects.using(alias).filter(
        model__model_name=group.model_name, tenant_id=group.tenant_id, timestamp__lt=group.cutoff
    )


def _access_rows(alias: str, group: Group) -> models.QuerySet[Any]:
    return AccessLog.objects.using(alias).filter(accessed_at__lt=group.cutoff)


# ------------------------------------------------------------------------------ purging


def run_purge(
    using: str | None = None,
    *,
    ran_by: str,
    execute: bool = False,
    now: dt.datetime | None = None,
    policy: RetentionPolicy | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    groups: list[Group] | None = None,
) -> PurgeResult:
    """Plan, and with ``execute=True`` remove, what is past retention and under no hold.

    ``ran_by`` (who) goes into every purge record. Each batch is its own transaction (module
    docstring); an interrupted purge leaves only whole, recorded batches behind. ``groups``:
    a plan from :func:`plan_purge` (with the same ``now``), else planned here.
    """
    alias = resolve_alias(using)
    policy = policy if policy is not None else audit_settings.RETENTION
    now = now or timezone.now()
    if groups is None:
        groups = plan_purge(alias, now=now, policy=policy)
    result = PurgeResult(uuid.uuid4(), groups)
    if not execute:
        return result
    result.executed = True
    size = batch_size or audit_settings.PURGE_BATCH_SIZE
    sealing = audit_settings.SEAL_KEY is not None
    if sealing:
        from ml_audit.sealing import seal_all

        seal_all(alias)
    batch = 0
    for group in groups:
        if not group.count:
            continue
        after: tuple[dt.datetime, Any] | None = None
        while True:
            holds = active_holds(alias)  # a hold placed during the purge is honoured
            batch += 1
            done = _purge_batch(alias, group, holds, size, result, batch, ran_by, policy, after)
            if done is None:
                batch -= 1
                break
            record, after = done
            result.records.append(record)
            if progress is not None:  # the plan counts the group's own rows
                progress(record.counts.get(group.target, 0))
            if record.counts.get(group.target, 0) < size:
                break
    if sealing and result.records:
        from ml_audit.sealing import seal_all

        seal_all(alias)
    return result


def _purge_batch(
    alias: str,
    group: Group,
    holds: Sequence[LegalHold],
    size: int,
    result: PurgeResult,
    batch: int,
    ran_by: str,
    policy: RetentionPolicy,
    after: tuple[dt.datetime, Any] | None,
) -> tuple[PurgeRecord, tuple[dt.datetime, Any]] | None:
    """One batch; ``after`` is the (time, id) of the last row of the previous batch: the
    next starts behind it (keyset), so that it never walks the index entries of the rows
    just deleted (dead until vacuum), which would make each batch slower than the last."""
    with transaction.atomic(using=alias), _as_purge_role(alias) as role:
        if group.target == "prediction":
            selected = _select_predictions(alias, group, holds, size, after)
        else:
            selected = _select_access(alias, group, holds, size, after)
        if selected is None:
            return None
        leaves, counts, times, deletes, last = selected
        leaves.sort()
        builder = MerkleBuilder()
        for kind, row_id, row_hash in leaves:
            builder.add(leaf_data(kind, row_id, row_hash))
        record = PurgeRecord(
            run_id=result.run_id,
            batch=batch,
            purged_at=timezone.now(),
            target=group.target,
            model_name=group.model_name,
            tenant_id=group.tenant_id,
            counts=counts,
            leaves=len(leaves),
            root=builder.root(),
            time_from=min(times),
            time_to=max(times),
            policy={
                "rule": group.rule.source,
                "days": group.rule.days,
                "cutoff": group.cutoff.isoformat(),
                "holds": [str(hold.pk) for hold in holds],
                "policy": policy.describe(),
            },
            ran_by=ran_by[:255],
            database_role=role,
        )
        record.save(using=alias)
        PurgedRow.objects.using(alias).bulk_create(
            [
                PurgedRow(purge=record, kind=kind, row_id=row_id, row_hash=row_hash)
                for kind, row_id, row_hash in leaves
            ],
            batch_size=2000,
        )
        with store.allow_purge(alias):
            for queryset in deletes:
                queryset._raw_delete(alias)  # one DELETE ... WHERE; the hatch is open
    for name, count in counts.items():
        result.counts[name] = result.counts.get(name, 0) + count
    return record, last


Selected = tuple[
    list[tuple[int, str, str]],
    dict[str, int],
    list[dt.datetime],
    list[models.QuerySet[Any]],
    tuple[dt.datetime, Any],
]


def _behind(column: str, after: tuple[dt.datetime, Any] | None) -> Q:
    if after is None:
        return Q()
    when, pk = after
    return Q(**{f"{column}__gt": when}) | Q(**{column: when, "pk__gt": pk})


def _select_predictions(
    alias: str,
    group: Group,
    holds: Sequence[LegalHold],
    size: int,
    after: tuple[dt.datetime, Any] | None,
) -> Selected | None:
    rows = _prediction_rows(alias, group).filter(_behind("timestamp", after))
    held = held_q(holds)
    if held is not None:
        rows = rows.exclude(held)
    chosen = list(
        rows.order_by("timestamp", "id").values_list("id", "timestamp", "content_hash")[:size]
    )
    if not chosen:
        return None
    ids = [row_id for row_id, _, _ in chosen]
    leaves = [(PREDICTION.kind, str(row_id), row_hash) for row_id, _, row_hash in chosen]
    counts = {"prediction": len(chosen)}
    deletes: list[models.QuerySet[Any]] = []
    for dependent in DEPENDENTS:
        children = dependent.model._default_manager.using(alias).filter(
            **{f"{dependent.fk}__in": ids}
        )
        if dependent.table is None:
            found = list(children.values_list("id", "content_hash"))
        else:
            found = _hashed_rows(alias, dependent.table, ids)
        leaves += [(dependent.kind, str(row_id), row_hash) for row_id, row_hash in found]
        if found or dependent.table is None:
            # Reviews, outcomes and reason codes are counted when a batch removed some (as
            # before they existed, a batch's counts name predictions and explanations).
            counts[dependent.name] = len(found)
        # The rows just tombstoned, by id: a row added since (an outcome recorded meanwhile)
        # is not deleted without its tombstone; it keeps its prediction, whose DELETE then
        # fails on the foreign key, and the batch rolls back whole.
        if found:
            deletes.append(children.filter(pk__in=[row_id for row_id, _ in found]))
    deletes.append(PredictionEvent.objects.using(alias).filter(id__in=ids))
    last = (chosen[-1][1], chosen[-1][0])
    return leaves, counts, [when for _, when, _ in chosen], deletes, last


def _hashed_rows(alias: str, table: DecisionTable, ids: list[Any]) -> list[tuple[str, str]]:
    """``(row id, row hash)`` of ``table``'s rows of these predictions, read as the sealer
    reads rows (raw columns, :meth:`DecisionTable.select`) and hashed by ``table.rehash``."""
    connection = connections[alias]
    prepare = PredictionEvent._meta.pk.get_db_prep_value
    params = [prepare(pk, connection) for pk in ids]
    sql = (
        f"{table.select(connection.vendor)} "
        f"WHERE {table.alias}.prediction_id IN ({', '.join(['%s'] * len(params))})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [(_uuid_text(row[0]), table.rehash(row)[0]) for row in rows]


def _uuid_text(value: Any) -> str:
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


_ACCESS_FIELDS = tuple(column.split(".", 1)[1] for column in ACCESS_COLUMNS)


def _select_access(
    alias: str,
    group: Group,
    holds: Sequence[LegalHold],
    size: int,
    after: tuple[dt.datetime, Any] | None,
) -> Selected | None:
    rows = _access_rows(alias, group).filter(_behind("accessed_at", after))
    held = access_held_q(holds)
    if held is not None:
        rows = rows.exclude(held)
    chosen = list(rows.order_by("accessed_at", "id").values_list(*_ACCESS_FIELDS)[:size])
    if not chosen:
        return None
    leaves = [(ACCESS.kind, str(row[0]), access_hash(row)[0]) for row in chosen]
    ids = [row[0] for row in chosen]
    deletes: list[models.QuerySet[Any]] = [AccessLog.objects.using(alias).filter(id__in=ids)]
    last = (chosen[-1][1], chosen[-1][0])
    return leaves, {"access": len(chosen)}, [row[1] for row in chosen], deletes, last


@contextmanager
def _as_purge_role(alias: str) -> Iterator[str]:
    """On PostgreSQL, inside the batch's transaction: ``SET LOCAL ROLE`` to the purge role when
    the connected role is a member of it but not it (and not a superuser), and back to the
    role before at the end (so a caller's enclosing transaction keeps its role); yields the
    role the batch runs as ("" elsewhere)."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        yield ""
        return
    role = audit_settings.PURGE_ROLE
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, current_setting('is_superuser') = 'on', "
            "to_regrole(%s) IS NOT NULL AND pg_has_role(current_user, to_regrole(%s), 'MEMBER')",
            [role, role],
        )
        current, superuser, member = cursor.fetchone()
    if not member or superuser or current == role:
        yield str(current)
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")  # PURGE_ROLE: a plain identifier (conf)
    yield role
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('role', %s, true)", [current])
