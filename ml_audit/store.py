"""The writer: the only code that inserts prediction and explanation rows.

Records in, rows out. :func:`write` persists one redacted :class:`PredictionRecord` and returns
its :class:`~ml_audit.models.PredictionEvent`; :func:`write_many` persists a batch with one
``INSERT ... ON CONFLICT DO NOTHING`` per chunk and reports, per record, whether it was created,
was an identical duplicate, or conflicts with what is stored.

Steady state is one INSERT: model-version and actor ids are cached per process and database
alias. An id is only cached once the transaction that read or created it has committed, so a
rolled-back transaction can never leave a dangling id in the cache.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import reduce
from operator import or_
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Model, Q
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import PredictionConflict

# The writer of explanation revisions has a room of its own; its names stay reachable here.
from ml_audit.explanation_writer import (
    append_explanation,
    append_explanation_of,
    verify_explanation,
    write_explanation,
)
from ml_audit.lru import LruCache
from ml_audit.models import (
    ModelVersion,
    PredictionEvent,
    RequestingActor,
    purge_allowed,
)
from ml_audit.records import (
    ActorPayload,
    PredictionRecord,
)

__all__ = [
    "WriteOutcome",
    "WriteResult",
    "allow_purge",
    "append_explanation",
    "append_explanation_of",
    "clear_caches",
    "event_to_record",
    "resolve_alias",
    "verify_event",
    "verify_explanation",
    "write",
    "write_explanation",
    "write_many",
]


# ------------------------------------------------------------------------------ id caches


_model_ids = LruCache(max_size=1_000)
_actor_ids = LruCache(max_size=50_000)
for _cache in (_model_ids, _actor_ids):
    os.register_at_fork(after_in_child=_cache.reset_after_fork)


def clear_caches() -> None:
    """Forget every cached model-version and actor id (tests, or after a restore)."""
    _model_ids.clear()
    _actor_ids.clear()


def _cache_after_commit(cache: LruCache, items: dict[Hashable, Any], alias: str) -> None:
    # on_commit runs at once in autocommit mode, and never if the transaction rolls back.
    def remember() -> None:
        for key, value in items.items():
            cache.put(key, value)

    transaction.on_commit(remember, using=alias)


def _model_key(alias: str, record: PredictionRecord) -> tuple[str, str, str]:
    return (alias, record.model_name, record.model_version)


def _actor_key(alias: str, actor: ActorPayload) -> tuple[str, str, str, str]:
    return (alias, actor.actor_type, actor.actor_id, actor.tenant_id or "")


def _ensure_models(alias: str, keys: set[tuple[str, str, str]]) -> dict[Hashable, uuid.UUID]:
    """Ids of the given model versions, creating the missing ones race-free."""
    ModelVersion.objects.using(alias).bulk_create(
        [ModelVersion(model_name=name, version=version) for _, name, version in sorted(keys)],
        ignore_conflicts=True,
    )
    condition = reduce(or_, (Q(model_name=name, version=version) for _, name, version in keys))
    found: dict[Hashable, uuid.UUID] = {
        (alias, name, version): pk
        for pk, name, version in ModelVersion.objects.using(alias)
        .filter(condition)
        .values_list("pk", "model_name", "version")
    }
    _cache_after_commit(_model_ids, found, alias)
    return found


def _ensure_actors(alias: str, keys: set[tuple[str, str, str, str]]) -> dict[Hashable, uuid.UUID]:
    """Ids of the given actors, creating the missing ones race-free."""
    RequestingActor.objects.using(alias).bulk_create(
        [
            RequestingActor(actor_type=kind, actor_id=ident, tenant_id=tenant)
            for _, kind, ident, tenant in sorted(keys)
        ],
        ignore_conflicts=True,
    )
    condition = reduce(
        or_,
        (Q(actor_type=kind, actor_id=ident, tenant_id=tenant) for _, kind, ident, tenant in keys),
    )
    found: dict[Hashable, uuid.UUID] = {
        (alias, kind, ident, tenant): pk
        for pk, kind, ident, tenant in RequestingActor.objects.using(alias)
        .filter(condition)
        .values_list("pk", "actor_type", "actor_id", "tenant_id")
    }
    _cache_after_commit(_actor_ids, found, alias)
    return found


# ------------------------------------------------------------------------------ results


@dataclasses.dataclass(frozen=True)
class WriteOutcome:
    """What happened to one record of a write."""

    record: PredictionRecord
    #: The stored row: the new one, or the existing one for an identical duplicate.
    event: PredictionEvent | None
    created: bool
    conflict: PredictionConflict | None = None


@dataclasses.dataclass(frozen=True)
class WriteResult:
    """Per-record outcomes of :func:`write_many`, in input order."""

    outcomes: list[WriteOutcome]

    @property
    def created(self) -> int:
        return sum(o.created for o in self.outcomes)

    @property
    def duplicates(self) -> int:
        return sum(1 for o in self.outcomes if not o.created and o.conflict is None)

    @property
    def conflicts(self) -> list[PredictionConflict]:
        return [o.conflict for o in self.outcomes if o.conflict is not None]

    @property
    def events(self) -> list[PredictionEvent]:
        return [o.event for o in self.outcomes if o.event is not None]


# ------------------------------------------------------------------------------ writing


def write(record: PredictionRecord, *, using: str | None = None) -> PredictionEvent:
    """Persist one redacted record and return its row.

    An identical record already stored under the same ``prediction_id`` is returned as is;
    different content raises :class:`~ml_audit.exceptions.PredictionConflict`.
    """
    outcome = write_many([record], using=using).outcomes[0]
    if outcome.conflict is not None:
        raise outcome.conflict
    assert outcome.event is not None
    return outcome.event


def write_many(records: Sequence[PredictionRecord], *, using: str | None = None) -> WriteResult:
    """Persist redacted records in bulk; never raises for duplicates or conflicts.

    Raises ``ValueError`` for a record that was not redacted (nothing is written then) and lets
    database errors propagate (nothing of the failed statement is written).
    """
    for record in records:
        if not record.is_redacted:
            raise ValueError(
                f"record {record.prediction_id!r} was not redacted; call record.redact() first"
            )
    if not records:
        return WriteResult([])
    alias = resolve_alias(using)
    model_ids, actor_ids = _cached_ids(alias, records)
    if model_ids is not None and actor_ids is not None:
        try:
            if len(records) == 1:  # steady state of a single record: exactly one statement
                return _insert_and_reconcile(alias, records, model_ids, actor_ids)
            # A batch may take several INSERTs (SQLite binds at most ~999 parameters): one
            # transaction makes it all-or-nothing and saves a commit per statement.
            with transaction.atomic(using=alias):
                return _insert_and_reconcile(alias, records, model_ids, actor_ids)
        except IntegrityError:
            # A cached id can go stale if its row was deleted; start again from the database.
            if connections[alias].in_atomic_block:
                raise
            clear_caches()
    with transaction.atomic(using=alias):
        # First use of a model or actor: look for already-stored predictions before creating
        # anything, so a duplicate or conflicting call leaves no orphan model or actor rows.
        existing = _existing_events(alias, [r.prediction_id for r in records])
        fresh = [r for r in records if r.prediction_id not in existing]
        model_ids = _ensure_models(alias, {_model_key(alias, r) for r in fresh}) if fresh else {}
        actor_keys = {_actor_key(alias, r.actor) for r in fresh if r.actor is not None}
        actor_ids = _ensure_actors(alias, actor_keys) if actor_keys else {}
        return _insert_and_reconcile(alias, records, model_ids, actor_ids, existing)


def _cached_ids(
    alias: str, records: Sequence[PredictionRecord]
) -> tuple[dict[Hashable, uuid.UUID] | None, dict[Hashable, uuid.UUID] | None]:
    model_ids: dict[Hashable, uuid.UUID] = {}
    actor_ids: dict[Hashable, uuid.UUID] = {}
    for record in records:
        key = _model_key(alias, record)
        if key not in model_ids:
            pk = _model_ids.get(key)
            if pk is None:
                return None, None
            model_ids[key] = pk
        if record.actor is not None:
            akey = _actor_key(alias, record.actor)
            if akey not in actor_ids:
                apk = _actor_ids.get(akey)
                if apk is None:
                    return None, None
                actor_ids[akey] = apk
    return model_ids, actor_ids


def _event_from_record(
    alias: str, record: PredictionRecord, model_id: uuid.UUID, actor_id: uuid.UUID | None
) -> PredictionEvent:
    actor = record.actor
    event = PredictionEvent(
        id=record.event_id,
        prediction_id=record.prediction_id,
        timestamp=record.timestamp,
        trace_id=record.trace_id,
        span_id=record.span_id,
        parent_span_id=record.parent_span_id,
        correlation_id=record.correlation_id,
        environment=record.environment,
        model_id=model_id,
        actor_id=actor_id,
        tenant_id=record.tenant_id,
        client_ip=actor.ip_address if actor else None,
        user_agent=(actor.user_agent or "") if actor else "",
        auth_context=dict(actor.auth_context or {}) if actor else {},
        features=record.features,
        redaction=record.redaction,
        input_fingerprint=record.input_fingerprint,
        output=record.output,
        confidence=record.confidence,
        decision_outcome=record.decision_outcome,
        status=record.status,
        error_type=record.error_type,
        error_message=record.error_message,
        latency_ms=record.latency_ms,
        metadata=record.metadata,
        subject_ref=record.subject_ref,
        content_hash=record.content_hash(),
    )
    return event


def _insert_ignoring_conflicts(alias: str, events: list[PredictionEvent]) -> set[uuid.UUID]:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING id``; the ids of the rows inserted."""
    connection = connections[alias]
    fields = PredictionEvent._meta.concrete_fields
    pk_field = PredictionEvent._meta.pk
    assert pk_field is not None
    if len(events) == 1:
        return _insert_one(alias, events[0])
    copied = _copy_insert(alias, events)
    if copied is not None:
        return copied
    batch_size = max(1, connection.ops.bulk_batch_size(list(fields), events))
    inserted: set[uuid.UUID] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(events), batch_size):
            query = InsertQuery(PredictionEvent, on_conflict=OnConflict.IGNORE)
            query.insert_values(fields, list[Model](events[start : start + batch_size]))
            compiler = query.get_compiler(using=alias)
            compiler.returning_fields = [pk_field]
            for sql, params in compiler.as_sql():
                cursor.execute(sql, params)
                for (pk,) in cursor.fetchall():
                    inserted.add(pk if isinstance(pk, uuid.UUID) else uuid.UUID(str(pk)))
    return inserted


_INGEST_TABLE = "ml_audit_ingest"


def _copy_insert(alias: str, events: list[PredictionEvent]) -> set[uuid.UUID] | None:
    """PostgreSQL + psycopg 3: ``COPY`` the batch into a session-local temporary table, then one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING id``. None where not available.

    COPY streams rows without building or quoting a statement per row: about a third faster
    than Django's bulk INSERT. The temporary table is private to the connection and emptied
    after each batch; the audit table's triggers and constraints apply to the INSERT as usual.
    """
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    try:
        import psycopg
    except ImportError:  # psycopg2
        return None
    raw = connection.connection
    if not isinstance(raw, psycopg.Connection):
        return None
    fields = PredictionEvent._meta.concrete_fields
    table = connection.ops.quote_name(PredictionEvent._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    with connection.wrap_database_errors, raw.cursor() as cursor:
        # Every batch: a table created in a transaction that rolled back is gone again.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_INGEST_TABLE} "
            f"(LIKE {table}) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY {_INGEST_TABLE} ({columns}) FROM STDIN") as copy:
            for event in events:
                copy.write_row(
                    [
                        field.get_db_prep_save(field.pre_save(event, True), connection=connection)
                        for field in fields
                    ]
                )
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_INGEST_TABLE} "
            "ON CONFLICT DO NOTHING RETURNING id"
        )
        rows = cursor.fetchall()
        cursor.execute(f"TRUNCATE {_INGEST_TABLE}")
    return {pk if isinstance(pk, uuid.UUID) else uuid.UUID(str(pk)) for (pk,) in rows}


# The SQL of a one-row insert never changes for a given database: compile it once per alias
# and only prepare the parameters per record (the steady-state path of a synchronous record).
_one_row_sql: dict[tuple[str, str], str] = {}


def _compile_one(alias: str, event: PredictionEvent) -> tuple[str, Any]:
    query = InsertQuery(PredictionEvent, on_conflict=OnConflict.IGNORE)
    query.insert_values(PredictionEvent._meta.concrete_fields, [event])
    compiler = query.get_compiler(using=alias)
    compiler.returning_fields = [PredictionEvent._meta.pk]
    ((sql, params),) = compiler.as_sql()
    return sql, params


def _one_row_params(alias: str, event: PredictionEvent) -> list[Any]:
    connection = connections[alias]
    return [
        field.get_db_prep_save(field.pre_save(event, True), connection=connection)
        for field in PredictionEvent._meta.concrete_fields
    ]


def _insert_one(alias: str, event: PredictionEvent) -> set[uuid.UUID]:
    connection = connections[alias]
    key = (alias, connection.vendor)
    sql = _one_row_sql.get(key)
    if sql is None:
        sql, params = _compile_one(alias, event)
        _one_row_sql[key] = sql
    else:
        params = _one_row_params(alias, event)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {pk if isinstance(pk, uuid.UUID) else uuid.UUID(str(pk)) for (pk,) in rows}


def _existing_events(alias: str, prediction_ids: list[str]) -> dict[str, PredictionEvent]:
    rows = (
        PredictionEvent.objects.using(alias)
        .select_related("model", "actor")
        .filter(prediction_id__in=set(prediction_ids))
    )
    return {row.prediction_id: row for row in rows}


def _insert_and_reconcile(
    alias: str,
    records: Sequence[PredictionRecord],
    model_ids: dict[Hashable, uuid.UUID],
    actor_ids: dict[Hashable, uuid.UUID],
    existing: dict[str, PredictionEvent] | None = None,
) -> WriteResult:
    existing = dict(existing or {})
    candidates: list[tuple[PredictionRecord, PredictionEvent]] = []
    for record in records:
        if record.prediction_id in existing:
            continue
        actor_id = actor_ids[_actor_key(alias, record.actor)] if record.actor else None
        event = _event_from_record(alias, record, model_ids[_model_key(alias, record)], actor_id)
        candidates.append((record, event))
    inserted = (
        _insert_ignoring_conflicts(alias, [event for _, event in candidates])
        if candidates
        else set()
    )
    by_record: dict[int, PredictionEvent] = {}
    for record, event in candidates:
        if event.pk in inserted:
            event._state.adding = False
            event._state.db = alias
            by_record[id(record)] = event
            existing.setdefault(record.prediction_id, event)
    missing = [r.prediction_id for r in records if r.prediction_id not in existing]
    if missing:
        existing.update(_existing_events(alias, missing))
    outcomes = []
    for record in records:
        if id(record) in by_record:
            outcomes.append(WriteOutcome(record, by_record[id(record)], created=True))
            continue
        stored = existing.get(record.prediction_id)
        if stored is None:
            # Neither inserted nor found: the database skipped it for another reason.
            raise DatabaseError(
                f"prediction {record.prediction_id!r} was neither inserted nor found"
            )
        differing = _differing_fields(record, stored)
        if differing:
            conflict = PredictionConflict(record.prediction_id, differing)
            outcomes.append(WriteOutcome(record, None, created=False, conflict=conflict))
        else:
            outcomes.append(WriteOutcome(record, stored, created=False))
    return WriteResult(outcomes)


def _differing_fields(record: PredictionRecord, stored: PredictionEvent) -> tuple[str, ...]:
    if stored.pk == record.event_id:
        return ()
    mine = record.identity()
    theirs = event_to_record(stored).identity()
    return tuple(name for name in mine if mine[name] != theirs[name])


# ------------------------------------------------------------------------------ reading back


def event_to_record(event: PredictionEvent) -> PredictionRecord:
    """Rebuild the (redacted) record a row was written from; the inverse of the writer."""
    actor = None
    if event.actor_id is not None:
        row = event.actor
        assert row is not None
        actor = ActorPayload.stored(
            actor_type=row.actor_type,
            actor_id=row.actor_id,
            tenant_id=row.tenant_id or None,
            ip_address=event.client_ip,
            user_agent=event.user_agent or None,
            auth_context=event.auth_context or None,
        )
    return PredictionRecord(
        event_id=event.pk if isinstance(event.pk, uuid.UUID) else uuid.UUID(str(event.pk)),
        prediction_id=event.prediction_id,
        timestamp=event.timestamp,
        model_name=event.model.model_name,
        model_version=event.model.version,
        environment=event.environment,
        actor=actor,
        features=event.features,
        output=event.output,
        confidence=event.confidence,
        decision_outcome=event.decision_outcome,
        status=event.status,
        error_type=event.error_type,
        error_message=event.error_message,
        latency_ms=event.latency_ms,
        metadata=event.metadata,
        trace_id=event.trace_id,
        span_id=event.span_id,
        parent_span_id=event.parent_span_id,
        correlation_id=event.correlation_id,
        redaction=event.redaction,
        subject_ref=event.subject_ref,
    )


def verify_event(event: PredictionEvent) -> bool:
    """Whether the row's stored ``content_hash`` still matches its content."""
    return event_to_record(event).content_hash() == event.content_hash


# ------------------------------------------------------------------------------ purge hatch


@contextmanager
def allow_purge(using: str | None = None) -> Iterator[None]:
    """The one deliberate way to delete audit rows: for retention purges only.

    Must run inside ``transaction.atomic(using=...)`` on the audit alias. While it is open,
    the ORM guard and the database triggers let DELETE (and TRUNCATE on PostgreSQL) through
    on this connection; UPDATE stays forbidden. On PostgreSQL it sets the transaction-local
    setting ``ml_audit.allow_purge``; on SQLite it inserts a row into ``ml_audit_purge_permit``
    and removes it on exit. Either ends with the transaction at the latest.
    """
    alias = resolve_alias(using)
    connection = connections[alias]
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            f"allow_purge() must run inside transaction.atomic(using={alias!r})"
        )
    token = purge_allowed.set(alias)
    _set_purge_permit(alias, on=True)
    try:
        yield
    finally:
        purge_allowed.reset(token)
        # If the transaction is already broken it will roll back, taking the permit with it.
        with suppress(DatabaseError):
            _set_purge_permit(alias, on=False)


def _set_purge_permit(alias: str, *, on: bool) -> None:
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT set_config('ml_audit.allow_purge', %s, true)", ["on" if on else "off"]
            )
        elif connection.vendor == "sqlite":
            if on:
                cursor.execute(
                    "INSERT INTO ml_audit_purge_permit (granted_at) VALUES (CURRENT_TIMESTAMP)"
                )
            else:
                cursor.execute("DELETE FROM ml_audit_purge_permit")
