"""How a prediction record travels with its span to the processor.

The span helpers build the whole redacted record before the span ends and hand it over here,
keyed by the span's ids. ``MLAuditSpanProcessor.on_end`` takes it back. The processor therefore
never rebuilds a row from span attributes that a sampler, an attribute limit or the
payload-export setting may have removed or cut.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from typing import Any

from ml_audit.records import PredictionRecord

__all__ = ["PendingWrite", "finalize", "hand_over", "take"]

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


@dataclasses.dataclass(eq=False)
class PendingWrite:
    """A record waiting for its span to end, and (for sync writes) the result of the write."""

    record: PredictionRecord
    #: Write inside on_end and report the row back (``record_prediction_event``).
    sync: bool = False
    #: Take ``latency_ms`` from the span's duration (the span helpers).
    latency_from_span: bool = False
    #: Database alias for this write (None: the processor's).
    using: str | None = None
    done: _Flag = dataclasses.field(default_factory=_Flag)
    event: Any = None
    error: BaseException | None = None

    def resolve(self, event: Any) -> None:
        self.event = event
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


_lock = threading.Lock()
_pending: OrderedDict[tuple[int, int], PendingWrite] = OrderedDict()


def _after_fork_in_child() -> None:
    # A fork while another thread held the lock would leave the child's copy locked forever;
    # and the parent's pending spans never end in the child.
    global _lock
    _lock = threading.Lock()
    _pending.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def hand_over(trace_id: int, span_id: int, pending: PendingWrite) -> None:
    with _lock:
        _pending[(trace_id, span_id)] = pending
        while len(_pending) > MAX_PENDING:
            (_, lost_span), lost = _pending.popitem(last=False)
            logger.error(
                "ml_audit: prediction %s was handed over but its span %016x never ended; "
                "it will be persisted from span attributes if the span ever ends",
                lost.record.prediction_id,
                lost_span,
            )


def take(trace_id: int, span_id: int) -> PendingWrite | None:
    with _lock:
        return _pending.pop((trace_id, span_id), None)


def finalize(
    pending: PendingWrite, start_time_ns: int | None, end_time_ns: int | None
) -> PredictionRecord:
    """The record to persist: latency from the span's duration when asked for."""
    record = pending.record
    if pending.latency_from_span and start_time_ns is not None and end_time_ns is not None:
        record = record.evolve(latency_ms=max(0, end_time_ns - start_time_ns) / 1e6)
    return record
