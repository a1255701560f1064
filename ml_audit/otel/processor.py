"""``MLAuditSpanProcessor``: persists ``ml_audit.prediction`` spans through the writer.

The span helpers build the whole redacted record, hand it over with
:func:`ml_audit.otel.pending.hand_over` and end the span; :meth:`MLAuditSpanProcessor.on_end`
takes it back and persists it with :func:`ml_audit.store.write_many`, the only writer. Spans
without a hand-over (other code paths) are rebuilt from their attributes with
:func:`~ml_audit.otel.conventions.decode_span` and checked by
:func:`~ml_audit.records.revalidated` as a recording call is checked (a record that does not
pass, or does not say it was redacted, is dropped, logged and counted). Every other span
costs one ``startswith``.

Two ways to write:

``sync``
    Inside ``on_end``, in the thread that ends the span: the row exists when ``span.end()``
    returns and the :class:`~ml_audit.otel.pending.PendingWrite` is resolved with it (or
    failed with the :class:`~ml_audit.exceptions.PredictionConflict` or database error). A
    hand-over marked ``sync`` (``record_prediction_event``) is always written this way.

``batch``
    ``on_end`` appends to a bounded queue and returns; a daemon thread, started on first use,
    writes up to ``max_batch_size`` records with one ``write_many`` call as soon as that many are
    queued, or whatever is queued ``schedule_delay_millis`` after it started waiting.

Where the SDK's ``BatchSpanProcessor`` would silently drop, this processor never does:

- **Full queue**: ``on_end`` waits up to ``queue_full_timeout_millis`` for room (the only
  time it blocks), then appends the record to the spool on disk (``spooled``). With
  ``drop_on_overflow=True`` it drops it instead, logged at error level with its prediction_id
  and counted (``dropped``).
- **Database errors**: the connection is closed (the next attempt reconnects) and the write is
  retried ``retry_attempts`` times, ``retry_backoff_millis * 2**n`` apart; then the records are
  spooled. When the failure was not the connection (a record the database refuses), the
  records are written one by one first, so one bad record does not take its batch with it.
  In sync mode inside the caller's ``transaction.atomic()`` there is no retry (the
  transaction is broken; only the caller can roll it back): the record is spooled at once and
  the error reported through the ``PendingWrite``.
- **Replay**: after a successful batch, if this process spooled anything (or once every
  :attr:`~MLAuditSpanProcessor.rescan_interval` seconds, and at the first success after
  start-up) the spool is replayed into the database (``replayed``), one file at a time, see
  :mod:`ml_audit.otel.spool`; while idle, this process's own spooled records are replayed
  every :attr:`~MLAuditSpanProcessor.replay_retry_interval` seconds. Replay is idempotent.
- **Conflicts** (same prediction_id, other content) are the caller's error: reported through
  the ``PendingWrite`` in sync mode, logged (prediction_id and fields, never values) in batch
  mode, counted (``conflicts``), never spooled.

Writes run with OpenTelemetry instrumentation suppressed, so the library never traces itself.
The worker manages its own connection: ``close_old_connections()`` before a batch that follows
an idle second (so ``CONN_MAX_AGE`` applies to it as to a request; back-to-back batches keep
their connection), a close after a database error, and ``connections.close_all()`` when it
ends.

:meth:`~MLAuditSpanProcessor.shutdown` (also run at interpreter exit, e.g. after SIGTERM makes a
gunicorn or uwsgi worker exit) stops accepting, writes or spools everything queued and rotates
the spool. After ``os.fork`` the child starts with an empty queue (the parent's records are the
parent's to write) and its own worker and spool file.

Counters (``stats()`` and OpenTelemetry counters ``ml_audit.records.<name>`` from the meter
``ml_audit``), per process:

=============  ==================================================================================
queued         records accepted into the batch queue
written        rows inserted by a live write (batch or sync)
duplicates     live writes whose prediction_id was already stored with the same content
conflicts      records refused: prediction_id stored with different content (live or replay)
spooled        records appended to the spool (full queue, database failure, after shutdown)
replayed       spooled records now in the database (inserted, or found stored identically)
dropped        records neither in the database nor in the spool: undecodable or invalid spans,
               drops on overflow, spool write failures, unreadable spool lines (``.corrupt``)
=============  ==================================================================================
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from django.db import (
    DatabaseError,
    close_old_connections,
    connections,
)
from opentelemetry import metrics
from opentelemetry.metrics import Counter, MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ml_audit import store
from ml_audit.conf import WRITE_MODES, audit_settings
from ml_audit.otel import conventions, pending
from ml_audit.otel.journal import Journal, Segment, journal_line
from ml_audit.otel.recovery import Item as _Item
from ml_audit.otel.recovery import SpoolRecovery, by_alias, record_of
from ml_audit.otel.spool import InsecureSpoolDirectory, Spool, SpooledExplanation
from ml_audit.otel.spool_lines import reredact
from ml_audit.otel.writes import in_atomic, is_connection_error, log_conflict, run_untraced
from ml_audit.records import PredictionRecord, revalidated

__all__ = ["COUNTERS", "MLAuditSpanProcessor", "is_connection_error", "run_untraced"]

logger = logging.getLogger("ml_audit.otel")

COUNTERS = ("queued", "written", "duplicates", "conflicts", "spooled", "replayed", "dropped")

_DESCRIPTIONS = {
    "queued": "Prediction records accepted into the audit batch queue",
    "written": "Prediction rows inserted by the audit writer",
    "duplicates": "Prediction records already stored with the same content",
    "conflicts": "Prediction records refused: prediction_id stored with different content",
    "spooled": "Prediction records appended to the audit spool on disk",
    "replayed": "Spooled prediction records now in the database",
    "dropped": "Prediction records neither stored nor spooled (each one is logged)",
}


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer.")
    return value


def _non_negative(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer.")
    return value


class MLAuditSpanProcessor(SpoolRecovery, SpanProcessor):
    """Persists prediction spans to the audit tables (see the module docstring).

    Every argument is keyword-only and defaults (``None``) to its ``ML_AUDIT`` setting:
    ``mode`` (``WRITE_MODE``), ``max_queue_size`` (``BATCH_MAX_QUEUE_SIZE``),
    ``max_batch_size`` (``BATCH_MAX_SIZE``), ``schedule_delay_millis``
    (``BATCH_SCHEDULE_DELAY_MS``), ``queue_full_timeout_millis``
    (``BATCH_QUEUE_FULL_TIMEOUT_MS``), ``drop_on_overflow`` (``DROP_ON_OVERFLOW``),
    ``retry_attempts`` (``WRITE_RETRY_ATTEMPTS``), ``retry_backoff_millis``
    (``WRITE_RETRY_BACKOFF_MS``), ``spool_dir`` (``SPOOL_DIR``). ``using`` is the database
    alias (None: ``DATABASE_ALIAS``, read at each write); ``meter_provider`` the OpenTelemetry
    meter provider of the counters (None: the global one). Invalid values raise ``ValueError``.
    """

    #: Seconds between scans of the spool directory (files left by other processes) while
    #: writes succeed.
    rescan_interval: float = 60.0
    #: Seconds before this process's spooled records are replayed while the writer is idle,
    #: and before a replay that could not reach the database is tried again while idle.
    replay_retry_interval: float = 5.0
    #: Seconds ``shutdown()`` waits for the worker to drain the queue; what is still queued
    #: then is spooled.
    shutdown_timeout: float = 30.0
    #: Seconds without a batch after which the worker applies ``close_old_connections()``
    #: before the next one (back-to-back batches keep their connection).
    connection_idle_seconds: float = 1.0

    def __init__(
        self,
        *,
        mode: str | None = None,
        max_queue_size: int | None = None,
        max_batch_size: int | None = None,
        schedule_delay_millis: int | None = None,
        queue_full_timeout_millis: int | None = None,
        drop_on_overflow: bool | None = None,
        retry_attempts: int | None = None,
        retry_backoff_millis: int | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        using: str | None = None,
        meter_provider: MeterProvider | None = None,
        journal_fsync: bool | None = None,
    ) -> None:
        def default(value: Any, setting: str) -> Any:
            return getattr(audit_settings, setting) if value is None else value

        mode = default(mode, "WRITE_MODE")
        if mode not in WRITE_MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, WRITE_MODES))}.")
        self._mode: str = mode
        self._max_queue_size = _positive(
            "max_queue_size", default(max_queue_size, "BATCH_MAX_QUEUE_SIZE")
        )
        self._max_batch_size = _positive(
            "max_batch_size", default(max_batch_size, "BATCH_MAX_SIZE")
        )
        if self._max_batch_size > self._max_queue_size:
            raise ValueError("max_batch_size must be less than or equal to max_queue_size.")
        self._schedule_delay = (
            _positive(
                "schedule_delay_millis", default(schedule_delay_millis, "BATCH_SCHEDULE_DELAY_MS")
            )
            / 1e3
        )
        self._queue_full_timeout = (
            _non_negative(
                "queue_full_timeout_millis",
                default(queue_full_timeout_millis, "BATCH_QUEUE_FULL_TIMEOUT_MS"),
            )
            / 1e3
        )
        drop = default(drop_on_overflow, "DROP_ON_OVERFLOW")
        if not isinstance(drop, bool):
            raise ValueError("drop_on_overflow must be True or False.")
        self._drop_on_overflow = drop
        self._retry_attempts = _non_negative(
            "retry_attempts", default(retry_attempts, "WRITE_RETRY_ATTEMPTS")
        )
        self._retry_backoff = (
            _non_negative(
                "retry_backoff_millis", default(retry_backoff_millis, "WRITE_RETRY_BACKOFF_MS")
            )
            / 1e3
        )
        directory = default(spool_dir, "SPOOL_DIR")
        if not isinstance(directory, str | os.PathLike) or not str(directory):
            raise ValueError("spool_dir must be a directory path.")
        if using is not None and (not isinstance(using, str) or not using):
            raise ValueError("using must be a database alias or None.")
        self._using = using
        self.spool = Spool(directory)
        fsync = default(journal_fsync, "JOURNAL_FSYNC")
        if not isinstance(fsync, bool):
            raise ValueError("journal_fsync must be True or False.")
        #: ``journal`` mode's write-ahead journal (None in the other modes).
        self.journal: Journal | None = (
            Journal(directory, fsync=fsync) if mode == "journal" else None
        )

        from ml_audit import __version__

        meter = metrics.get_meter("ml_audit", __version__, meter_provider=meter_provider)
        self._counters: dict[str, Counter] = {
            name: meter.create_counter(
                f"ml_audit.records.{name}", unit="{record}", description=_DESCRIPTIONS[name]
            )
            for name in COUNTERS
        }
        self._queued_counter = self._counters["queued"]
        self._shutdown = False
        self._reset_runtime_state()

        ref = weakref.ref(self)
        atexit.register(_shutdown_at_exit, ref)
        if hasattr(os, "register_at_fork"):

            def after_in_child() -> None:
                processor = ref()
                if processor is not None:
                    processor._reset_runtime_state()

            os.register_at_fork(after_in_child=after_in_child)

    def _reset_runtime_state(self) -> None:
        """Fresh locks, an EMPTY queue, no worker, zero counts (construction, and the child
        after ``os.fork``: the parent's queued records are the parent's to write)."""
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._queue: deque[_Item] = deque()
        # Records ever enqueued / taken by the worker / finished (written, spooled...).
        self._enqueued = 0
        self._taken = 0
        self._finished = 0
        self._flush_target = 0
        self._worker: threading.Thread | None = None
        self._stopping = self._shutdown
        self._drain_failed = False
        self._spooled_since_replay = False
        self._replay_retry_at = 0.0
        self._next_scan_at = 0.0  # the first successful batch looks for leftovers
        self._spool_refused = False
        self._last_batch_end = float("-inf")  # the first batch checks its connection
        self._stats_lock = threading.Lock()
        self._stats = dict.fromkeys(COUNTERS, 0)

    # ------------------------------------------------------------------ public API

    @property
    def mode(self) -> str:
        return self._mode

    def stats(self) -> dict[str, int]:
        """This process's counters (see the module docstring), a snapshot."""
        with self._stats_lock:
            return dict(self._stats)

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        """Persist a finished prediction span; never raises."""
        try:
            if not conventions.is_prediction_span(span.name):
                return
        except Exception:  # not a span we can read at all: not ours
            return
        handed: pending.PendingWrite | None = None
        try:
            context = span.context
            handed = pending.take(context.trace_id, context.span_id)
            if (
                handed is not None
                and not handed.sync
                and self._mode != "sync"
                and handed.record.redaction is not None
            ):
                # The span helpers' queued write, inline: journal and queue the record.
                latency = None
                if handed.latency_from_span:
                    latency = pending.latency_ms(handed, span.start_time, span.end_time)
                self._queue_record(handed.record, handed.using or self._using, latency)
                return
            self._persist(span, handed)
        except Exception as exc:
            logger.exception("ml_audit: unexpected error persisting prediction span %r", span.name)
            if handed is None:
                self._count("dropped")
            else:
                # Last resort, so that even a bug here does not lose the record.
                self._spool_items(
                    [(handed.record, handed.using or self._using, None, None)], reason=exc
                )
                if not handed.done.is_set():
                    handed.fail(exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until every record queued before this call is written or spooled.

        Returns False if that did not happen within ``timeout_millis``.
        """
        deadline = time.monotonic() + max(0, timeout_millis) / 1e3
        start_here = False
        with self._lock:
            target = self._enqueued
            if self._finished >= target:
                return True
            self._flush_target = max(self._flush_target, target)
            self._not_empty.notify_all()
            if self._worker is None and not self._stopping:
                start_here = True
        if start_here:
            self._ensure_worker()
        with self._lock:
            while self._finished < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
            return True

    def shutdown(self) -> None:
        """Stop accepting records, write (or spool) everything queued, stop the worker.

        Idempotent. Records ending after shutdown are spooled, not lost.
        """
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = self._stopping = True
            worker = self._worker
            self._not_empty.notify_all()
            self._not_full.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join(self.shutdown_timeout)
            if worker.is_alive():
                logger.error(
                    "ml_audit: the audit writer did not finish within %.0f s; spooling what "
                    "is still queued",
                    self.shutdown_timeout,
                )
        with self._lock:
            leftovers = list(self._queue)
            self._queue.clear()
            self._taken += len(leftovers)
        if leftovers:
            if worker is None:
                # The worker died: write them here.
                self._process(leftovers, in_worker=False)
            else:
                self._spool_items(leftovers, reason="the writer did not finish in time")
            self._release(leftovers)
            with self._lock:
                self._finished += len(leftovers)
                self._progress.notify_all()
        with suppress(OSError):
            self.spool.rotate()
        if self.journal is not None:
            with suppress(OSError):
                self.journal.close()

    # ------------------------------------------------------------------ on_end

    def _persist(self, span: ReadableSpan, handed: pending.PendingWrite | None) -> None:
        if handed is None:
            decoded = self._decode(span)
            if decoded is None:
                return
            record, using, sync = decoded, self._using, False
            latency = None
        else:
            record = handed.record
            latency = pending.latency_ms(handed, span.start_time, span.end_time)
            using, sync = handed.using or self._using, handed.sync
        if record.redaction is None:
            error = ValueError(f"record {record.prediction_id!r} was not redacted")
            logger.error("ml_audit: dropped prediction %s: not redacted", record.prediction_id)
            self._count("dropped")
            if handed is not None:
                handed.fail(error)
            return
        if sync or self._mode == "sync":
            if latency is not None:
                record = pending.with_latency(record, latency)
            self._write_now(record, using, handed)
        else:
            self._queue_record(record, using, latency)

    def _queue_record(self, record: PredictionRecord, using: str | None, latency: Any) -> None:
        """Queue a record for the writer; in ``journal`` mode after it is in the journal, so
        that it survives this process from here on."""
        journal = self.journal
        if journal is None:
            self._enqueue((record, using, latency, None))
            return
        try:
            segment = journal.append(journal_line(record, using, latency))
        except Exception as exc:
            if isinstance(exc, InsecureSpoolDirectory):
                self._refuse_spool_directory(exc)  # logged once; every record written now
            else:
                logger.error(
                    "ml_audit: could not journal prediction %s (%s: %s); writing it now",
                    record.prediction_id,
                    type(exc).__name__,
                    exc,
                )
            self._write_now(record_of((record, using, latency, None)), using, None)
            return
        self._enqueue((record, using, latency, segment))

    def _decode(self, span: ReadableSpan) -> PredictionRecord | None:
        try:
            # Not from the span helpers (nothing was handed over): checked as they check a call,
            # and redacted like everything else that reaches the writer.
            record = revalidated(conventions.decode_span(span))
            return reredact(record, audit_settings.redaction_policy, audit_settings.REDACT_PAYLOADS)
        except Exception as exc:
            context = span.context
            logger.error(
                "ml_audit: dropped prediction span %r (trace %s, span %s): no record was "
                "handed over and its attributes cannot be decoded as a valid record: %s",
                span.name,
                conventions.format_trace_id(context.trace_id) if context else "?",
                conventions.format_span_id(context.span_id) if context else "?",
                exc,
            )
            self._count("dropped")
            return None

    def _write_now(
        self, record: PredictionRecord, using: str | None, handed: pending.PendingWrite | None
    ) -> None:
        try:
            result = self._write_with_retries([record], using)
        except Exception as exc:
            logger.error(
                "ml_audit: could not write prediction %s (%s: %s); it is spooled for replay",
                record.prediction_id,
                type(exc).__name__,
                exc,
            )
            self._spool_items([(record, using, None, None)], reason=exc)
            if handed is not None:
                handed.fail(exc)
            return
        outcome = result.outcomes[0]
        if outcome.conflict is not None:
            self._count("conflicts")
            if handed is not None:
                handed.fail(outcome.conflict)
            else:
                log_conflict(outcome.conflict)
            return
        self._count("written" if outcome.created else "duplicates")
        if handed is not None:
            handed.resolve(outcome.event)

    def _enqueue(self, item: _Item) -> None:
        queue = self._queue
        with self._lock:
            # The common case first: running, room in the queue, the worker started.
            if (
                not self._stopping
                and len(queue) < self._max_queue_size
                and self._worker is not None
            ):
                queue.append(item)
                self._enqueued += 1
                size = len(queue)
                if size == 1 or size >= self._max_batch_size:
                    self._not_empty.notify()
                accepted = True
            else:
                accepted = False
        if accepted:
            # self._count("queued"), inline
            with self._stats_lock:
                self._stats["queued"] += 1
            self._queued_counter.add(1)
        else:
            self._enqueue_slowly(item)

    def _enqueue_slowly(self, item: _Item) -> None:
        """:meth:`_enqueue` when shut down, the queue is full or the worker not started yet."""
        reason = ""
        with self._lock:
            queue = self._queue
            if self._stopping:
                reason = "the processor is shut down"
            else:
                if len(queue) >= self._max_queue_size and self._queue_full_timeout > 0:
                    deadline = time.monotonic() + self._queue_full_timeout
                    while len(queue) >= self._max_queue_size and not self._stopping:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._not_full.wait(remaining)
                if self._stopping:
                    reason = "the processor is shut down"
                elif len(queue) >= self._max_queue_size:
                    reason = "the queue is full"
                elif self._worker is None and not self._start_worker_locked():
                    reason = "no writer thread"
                else:
                    queue.append(item)
                    self._enqueued += 1
                    if len(queue) == 1 or len(queue) >= self._max_batch_size:
                        self._not_empty.notify()
        if not reason:
            self._count("queued")
            return
        if reason == "no writer thread":
            self._write_now(record_of(item), item[1], None)
        elif reason == "the queue is full" and self._drop_on_overflow:
            logger.error(
                "ml_audit: dropped prediction %s: the audit queue is full (%d) and "
                "DROP_ON_OVERFLOW is on",
                item[0].prediction_id,
                self._max_queue_size,
            )
            self._count("dropped")
        else:
            self._spool_items([item], reason=reason)
        self._release([item])

    # ------------------------------------------------------------------ the worker

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None and not self._stopping:
                self._start_worker_locked()

    def _start_worker_locked(self) -> bool:
        worker = threading.Thread(target=self._run, name="ml_audit-writer", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # e.g. "can't create new thread at interpreter shutdown"
            return False
        self._worker = worker
        return True

    def _run(self) -> None:
        try:
            # A writer that starts takes over what writers that died left behind.
            self._replay(idle=False)
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                if not batch:  # idle: the spool may be due for a replay, the rows for a seal
                    self._replay(idle=True)
                    self._seal_if_due()
                    continue
                try:
                    self._process(batch)
                except Exception as exc:  # a bug: keep the records, keep the worker
                    logger.exception("ml_audit: unexpected error in the audit writer")
                    self._spool_items(batch, reason=exc)
                finally:
                    self._release(batch)
                    with self._lock:
                        self._finished += len(batch)
                        self._progress.notify_all()
                self._seal_if_due()
        finally:
            with self._lock:
                if self._worker is threading.current_thread():
                    self._worker = None
            with suppress(Exception):
                connections.close_all()

    def _seal_if_due(self) -> None:
        """Tamper evidence (``ML_AUDIT['SEALING']``): seal the stored rows when due, on this
        thread, never on a request's (see :func:`ml_audit.sealing.seal_if_due`)."""
        if self._seal_interval() is None:
            return
        try:
            from ml_audit.sealing import seal_if_due

            run_untraced(seal_if_due, using=self._using)
        except Exception:  # seal_if_due logs its own failures; this is a last resort
            logger.exception("ml_audit: the audit writer's sealing step failed")

    @staticmethod
    def _seal_interval() -> float | None:
        """Seconds between seals when sealing is on, else None."""
        try:
            if audit_settings.SEALING:
                return float(audit_settings.SEAL_INTERVAL_SECONDS)
        except Exception:  # invalid settings: reported by the system check, never fatal here
            return None
        return None

    def _next_batch(self) -> list[_Item] | None:
        """The next batch; [] when idle work is due; None when stopped and drained."""
        with self._lock:
            queue = self._queue
            deadline: float | None = None
            while True:
                if queue:
                    if (
                        self._stopping
                        or len(queue) >= self._max_batch_size
                        or self._flush_target > self._taken
                    ):
                        break
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self._schedule_delay
                    if now >= deadline:
                        break
                    self._not_empty.wait(deadline - now)
                    continue
                deadline = None
                if self._stopping:
                    return None
                if self._spooled_since_replay:
                    wait = self._replay_retry_at - time.monotonic()
                    if wait <= 0:
                        return []
                    self._not_empty.wait(wait)
                else:
                    interval = self._seal_interval()
                    if interval is None:
                        self._not_empty.wait()
                    elif not self._not_empty.wait(interval) and not queue:
                        return []  # time to seal what was written
            count = min(self._max_batch_size, len(queue))
            batch = [queue.popleft() for _ in range(count)]
            self._taken += count
            self._not_full.notify(count)
            return batch

    def _process(self, batch: list[_Item], *, in_worker: bool = True) -> None:
        """Write one batch (one write_many per alias), spooling what cannot be written."""
        if in_worker:
            # The worker's connection follows CONN_MAX_AGE like a request's, but a burst of
            # batches is one "request": reconnecting per batch costs ~5% of ingest. Never in
            # another thread: it would close a connection inside the caller's transaction.
            now = time.monotonic()
            if now - self._last_batch_end > self.connection_idle_seconds:
                with suppress(Exception):
                    close_old_connections()
        try:
            self._process_batch(batch)
        finally:
            self._last_batch_end = time.monotonic()

    def _process_batch(self, batch: list[_Item]) -> None:
        succeeded = False
        for using, records in by_alias(batch):
            if self._stopping and self._drain_failed:
                self._spool_records(records, using, reason="the database failed during shutdown")
                continue
            try:
                result = self._write_with_retries(records, using)
            except Exception as exc:
                self._write_failed(records, using, exc)
                if self._stopping:
                    self._drain_failed = True
                continue
            self._account(result)
            succeeded = True
        if succeeded and not self._stopping:
            self._replay(idle=False)

    # ------------------------------------------------------------------ writing

    def _write_once(self, records: list[PredictionRecord], using: str | None) -> store.WriteResult:
        """One ``write_many`` call, untraced (see :meth:`_untraced`)."""
        return run_untraced(store.write_many, records, using=using)

    def _write_explanation_once(self, entry: SpooledExplanation, using: str | None) -> bool:
        """A spooled explanation, written untraced; True when a revision was written."""
        return run_untraced(
            store.append_explanation_of, entry.prediction_id, entry.record, using=using
        )

    def _write_with_retries(
        self, records: list[PredictionRecord], using: str | None
    ) -> store.WriteResult:
        attempt = 0
        while True:
            try:
                return self._write_once(records, using)
            except DatabaseError as exc:
                if attempt >= self._retry_attempts or self._drain_failed or in_atomic(using):
                    raise
                delay = self._retry_backoff * 2**attempt
                attempt += 1
                logger.warning(
                    "ml_audit: database error writing %d prediction(s) (%s: %s); retry %d of "
                    "%d in %.0f ms",
                    len(records),
                    type(exc).__name__,
                    exc,
                    attempt,
                    self._retry_attempts,
                    delay * 1e3,
                )
                time.sleep(delay)

    def _account(self, result: store.WriteResult) -> None:
        created = duplicates = 0
        for outcome in result.outcomes:
            if outcome.conflict is not None:
                self._count("conflicts")
                log_conflict(outcome.conflict)
            elif outcome.created:
                created += 1
            else:
                duplicates += 1
        self._count("written", created)
        self._count("duplicates", duplicates)

    def _release(self, items: Iterable[_Item]) -> None:
        """These queued records are written or spooled: their journal lines may go."""
        journal = self.journal
        if journal is None:
            return
        counts: dict[Segment, int] = {}
        for item in items:
            segment = item[3]
            if segment is not None:
                counts[segment] = counts.get(segment, 0) + 1
        for segment, count in counts.items():
            journal.done(segment, count)

    # ------------------------------------------------------------------ counters

    def _count(self, name: str, amount: int = 1) -> None:
        if amount:
            with self._stats_lock:
                self._stats[name] += amount
            self._counters[name].add(amount)


def _shutdown_at_exit(ref: weakref.ref[MLAuditSpanProcessor]) -> None:
    processor = ref()
    if processor is not None:
        try:
            processor.shutdown()
        except Exception:  # never fail the interpreter's exit
            logger.exception("ml_audit: flushing the audit writer at exit failed")
