"""What the audit writer does with records the database cannot take now: spool, then replay.

A mixin of :class:`~ml_audit.otel.processor.MLAuditSpanProcessor` (the processor's state and
counters are its own; see the processor's module docstring for the behaviour): records whose
write failed are appended to the spool (:mod:`ml_audit.otel.spool`), and the spool, with the
journals and spool files that other processes left behind, is replayed once writes succeed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import suppress

from ml_audit import store
from ml_audit.otel import pending
from ml_audit.otel.journal import Segment
from ml_audit.otel.spool import InsecureSpoolDirectory, ReplayResult, Spool, SpooledExplanation
from ml_audit.otel.writes import is_connection_error
from ml_audit.records import ExplanationRecord, PredictionRecord

__all__ = ["Item", "SpoolRecovery", "by_alias", "record_of"]

logger = logging.getLogger("ml_audit.otel")

#: A queued record, the explicit database alias it goes to (None: the audit alias), the
#: latency to set on it (the span helpers': its span's duration) or None, and the journal
#: segment holding it (``journal`` mode) or None. The writer thread sets the latency
#: (:func:`record_of`), so that the request thread does not copy the record for it.
Item = tuple[PredictionRecord, str | None, float | None, Segment | None]


def record_of(item: Item) -> PredictionRecord:
    """The record to persist for a queued item (see ``Item``)."""
    record, _, latency, _ = item
    return record if latency is None else pending.with_latency(record, latency)


def by_alias(items: Iterable[Item]) -> list[tuple[str | None, list[PredictionRecord]]]:
    groups: dict[str | None, list[PredictionRecord]] = {}
    for item in items:
        groups.setdefault(item[1], []).append(record_of(item))
    return list(groups.items())


class SpoolRecovery:
    """Spooling and replay, for the processor (which sets every attribute declared here)."""

    spool: Spool
    rescan_interval: float
    replay_retry_interval: float
    _lock: threading.Lock
    _queue: deque[Item]
    _max_batch_size: int
    _stopping: bool
    _shutdown: bool
    _spooled_since_replay: bool
    _replay_retry_at: float
    _next_scan_at: float
    #: The spool directory was refused (InsecureSpoolDirectory): logged once, not replayed.
    _spool_refused: bool = False

    def _count(self, name: str, amount: int = 1) -> None:
        raise NotImplementedError

    def _write_once(self, records: list[PredictionRecord], using: str | None) -> store.WriteResult:
        raise NotImplementedError

    def _write_explanation_once(self, entry: SpooledExplanation, using: str | None) -> bool:
        raise NotImplementedError

    def _account(self, result: store.WriteResult) -> None:
        raise NotImplementedError

    def replay_spool(self, *, include_active: bool = False) -> ReplayResult:
        """Replay the spool now, in the calling thread: this process's own spooled records
        (the active file is rotated first) and every ready file; see :mod:`~.spool`."""
        self.spool.rotate()
        result = self.spool.replay(
            self._write_once,
            include_active=include_active,
            is_transient=is_connection_error,
            write_explanation=self._write_explanation_once,
        )
        self._count_replay(result)
        return result

    def _count_replay(self, result: ReplayResult) -> None:
        self._count("replayed", result.replayed)
        self._count("conflicts", result.conflicts)
        self._count("dropped", result.corrupt)

    def _write_failed(
        self, records: list[PredictionRecord], using: str | None, exc: Exception
    ) -> None:
        logger.error(
            "ml_audit: could not write %d prediction(s) (%s: %s); spooling them for replay",
            len(records),
            type(exc).__name__,
            exc,
        )
        if is_connection_error(exc) or len(records) == 1:
            self._spool_records(records, using, reason=exc)
            return
        # The database answered but refused the batch: find the record(s) it refuses, so that
        # the others are written now.
        for index, record in enumerate(records):
            try:
                result = self._write_once([record], using)
            except Exception as single:
                if is_connection_error(single):
                    self._spool_records(records[index:], using, reason=single)
                    return
                logger.error(
                    "ml_audit: prediction %s refused by the database (%s: %s); spooled",
                    record.prediction_id,
                    type(single).__name__,
                    single,
                )
                self._spool_records([record], using, reason=single)
            else:
                self._account(result)

    def _replay(self, *, idle: bool) -> None:
        """Replay the spool if due (see the module docstring); called by the worker."""
        now = time.monotonic()
        with self._lock:
            due = self._spooled_since_replay and (not idle or now >= self._replay_retry_at)
            if not idle and now >= self._next_scan_at:
                due = True
            if not due:
                return
            self._spooled_since_replay = False
        failed = False
        try:
            self.spool.rotate()
            while True:
                result = self.spool.replay(
                    self._write_once,
                    max_files=1,
                    is_transient=is_connection_error,
                    write_explanation=self._write_explanation_once,
                )
                self._count_replay(result)
                if result.failed and not result.files:
                    failed = True
                    break
                if not result.files:
                    break
                with self._lock:
                    # Let live records through between files.
                    if len(self._queue) >= self._max_batch_size or self._stopping:
                        self._spooled_since_replay = True
                        return
        except InsecureSpoolDirectory as refused:
            # A configuration error (the system check ml_audit.E004 reports it too): said
            # once, not retried every few seconds; a restart with a safe directory replays.
            self._refuse_spool_directory(refused)
            return
        except Exception:
            logger.exception("ml_audit: replay of the spool failed")
            failed = True
        with self._lock:
            self._next_scan_at = time.monotonic() + self.rescan_interval
            if failed:
                self._spooled_since_replay = True
                self._replay_retry_at = time.monotonic() + self.replay_retry_interval

    def _refuse_spool_directory(self, refused: InsecureSpoolDirectory) -> None:
        """Log (once per process) that the spool directory is refused; stop replaying it."""
        with self._lock:
            first = not self._spool_refused
            self._spool_refused = True
            self._spooled_since_replay = False
            self._next_scan_at = float("inf")
        if first:
            logger.error("ml_audit: %s Nothing is spooled or replayed there.", refused)

    # ------------------------------------------------------------------ spooling

    def spool_explanation(
        self,
        prediction_id: str,
        record: ExplanationRecord,
        *,
        using: str | None = None,
        reason: object = "the explanation could not be written",
    ) -> None:
        """Keep an explanation that could not be written (``record`` as it would be stored) in
        the spool; replays write it after the records spooled before it, so after its
        prediction when that was spooled too. Counted as ``spooled``; never raises (a spool
        that cannot be written is logged and counted as ``dropped``)."""
        self._spool_records([SpooledExplanation(prediction_id, record)], using, reason=reason)

    def _spool_items(self, items: list[Item], *, reason: object) -> None:
        for using, records in by_alias(items):
            self._spool_records(records, using, reason=reason)

    def _spool_records(
        self,
        records: Sequence[PredictionRecord | SpooledExplanation],
        using: str | None,
        *,
        reason: object,
    ) -> None:
        try:
            self.spool.append(records, using=using)
        except Exception as exc:
            logger.error(
                "ml_audit: LOST %d record(s) of prediction(s) %s: they could not be written "
                "(%s) nor spooled to %s (%s: %s)",
                len(records),
                ", ".join(r.prediction_id for r in records),
                reason,
                self.spool.directory,
                type(exc).__name__,
                exc,
            )
            self._count("dropped", len(records))
            return
        logger.warning(
            "ml_audit: spooled %d record(s) to %s (%s)",
            len(records),
            self.spool.directory,
            reason,
        )
        self._count("spooled", len(records))
        if self._shutdown:
            # Nobody will rotate this file later in this process: make it ready now.
            with suppress(OSError):
                self.spool.rotate()
        with self._lock:
            if not self._spooled_since_replay:
                self._spooled_since_replay = True
                self._replay_retry_at = time.monotonic() + self.replay_retry_interval
