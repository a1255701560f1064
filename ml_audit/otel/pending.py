"""How a prediction record travels with its span to the processor.

The span helpers build the whole redacted record before the span ends and hand it over here,
keyed by the span's ids. ``MLAuditSpanProcessor.on_end`` takes it back. The processor therefore
never rebuilds a row from span attributes that a sampler, an attribute limit or the
payload-export setting may have removed or cut.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ml_audit.records import PredictionRecord, _replace

__all__ = ["PendingWrite", "finalize", "hand_over", "latency_ms", "take", "with_latency"]

logger = logging.getLogger("ml_audit.otel")

# A span that is started but never ended is a caller bug; bound what it can hold on to.
MAX_PENDING = 100_000


class _Flag:
    """``threading.Event``'s ``set``/``is_set`` without its Condition and Lock.

    The processor's ``on_end`` runs inside ``span.end()`` (the SDK's multi span processors wait
    for it), so the caller reads the flag after it was set, on the same thread or after a
    join; creating an Event per prediction would only cost time on the request thread.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class PendingWrite:
    """A record waiting for its span to end, and (for sync writes) the result of the write.

    A plain class with ``__slots__`` (one is built per prediction, on the request thread).
    """

    __slots__ = ("done", "error", "event", "latency_from_span", "record", "sync", "using")

    def __init__(
        self,
        record: PredictionRecord,
        sync: bool = False,
        latency_from_span: bool = False,
        using: str | None = None,
    ) -> None:
        self.record = record
        #: Write inside on_end and report the row back (``record_prediction_event``).
        self.sync = sync
        #: Take ``latency_ms`` from the span's duration (the span helpers).
        self.latency_from_span = latency_from_span
        #: Database alias for this write (None: the processor's).
        self.using = using
        self.done = _Flag()
        self.event: Any = None
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"PendingWrite(prediction_id={self.record.prediction_id!r}, sync={self.sync}, "
            f"done={self.done.is_set()})"
        )

    def resolve(self, event: Any) -> None:
        self.event = event
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


# Hand-overs by (trace_id, span_id). A plain dict: one item assignment or pop is atomic in
# CPython (and thread-safe in free-threaded builds), so the request thread takes no lock to
# hand a record over and on_end none to take it back. Only the overflow path below, which
# iterates, takes ``_evict_lock``.
_pending: dict[tuple[int, int], PendingWrite] = {}
_evict_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A fork while another thread held the lock would leave the child's copy locked forever;
    # and the parent's pending spans never end in the child.
    global _evict_lock
    _evict_lock = threading.Lock()
    _pending.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def hand_over(trace_id: int, span_id: int, pending: PendingWrite) -> None:
    _pending[(trace_id, span_id)] = pending
    if len(_pending) > MAX_PENDING:
        _evict()


def _evict() -> None:
    """Forget the oldest hand-overs beyond MAX_PENDING (spans started but never ended)."""
    with _evict_lock:
        while len(_pending) > MAX_PENDING:
            try:
                oldest = next(iter(_pending))  # dicts keep insertion order: the oldest first
                lost = _pending.pop(oldest)
            except (RuntimeError, StopIteration, KeyError):
                # Another thread changed the dict meanwhile (RuntimeError from the iterator)
                # or took that very item: look again.
                continue
            logger.error(
                "ml_audit: prediction %s was handed over but its span %016x never ended; "
                "it will be persisted from span attributes if the span ever ends",
                lost.record.prediction_id,
                oldest[1],
            )


def take(trace_id: int, span_id: int) -> PendingWrite | None:
    return _pending.pop((trace_id, span_id), None)


def latency_ms(
    pending: PendingWrite, start_time_ns: int | None, end_time_ns: int | None
) -> float | None:
    """The latency to store, from the span's duration when asked for; else None."""
    if pending.latency_from_span and start_time_ns is not None and end_time_ns is not None:
        return max(0, end_time_ns - start_time_ns) / 1e6
    return None


def with_latency(record: PredictionRecord, latency: float) -> PredictionRecord:
    """A copy of a (redacted) record with ``latency_ms`` set."""
    return _replace(record, {"latency_ms": latency})  # type: ignore[no-any-return]


def finalize(
    pending: PendingWrite, start_time_ns: int | None, end_time_ns: int | None
) -> PredictionRecord:
    """The record to persist: latency from the span's duration when asked for."""
    latency = latency_ms(pending, start_time_ns, end_time_ns)
    return pending.record if latency is None else with_latency(pending.record, latency)
