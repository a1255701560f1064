"""Counters of the ingest endpoint, per process: ``stats()`` and the OpenTelemetry counter
``ml_audit.ingest.spans`` (meter ``ml_audit``) with an ``outcome`` attribute.

==========  ===============================================================================
stored      audit spans written (a prediction row, or an explanation revision)
duplicates  audit spans already stored with the same content (retries): success
rejected    audit spans refused, in ``partial_success`` (invalid, conflicting, wrong tenant)
ignored     spans that are not ``ml_audit`` spans (not an error; counted, not stored)
==========  ===============================================================================
"""

from __future__ import annotations

import threading

from opentelemetry import metrics
from opentelemetry.metrics import Counter

__all__ = ["OUTCOMES", "count", "reset", "stats"]

OUTCOMES = ("stored", "duplicates", "rejected", "ignored")

_lock = threading.Lock()
_stats = dict.fromkeys(OUTCOMES, 0)
_counter: Counter | None = None


def _otel_counter() -> Counter:
    global _counter
    if _counter is None:
        from ml_audit import __version__

        _counter = metrics.get_meter("ml_audit", __version__).create_counter(
            "ml_audit.ingest.spans",
            unit="{span}",
            description="Spans received by the ml_audit OTLP ingest endpoint, by outcome",
        )
    return _counter


def count(**amounts: int) -> None:
    """Add ``amounts`` (``stored=3, ignored=2``...) to the counters."""
    counter = _otel_counter()
    with _lock:
        for outcome, amount in amounts.items():
            _stats[outcome] += amount
    for outcome, amount in amounts.items():
        if amount:
            counter.add(amount, {"outcome": outcome})


def stats() -> dict[str, int]:
    """This process's counts so far, a snapshot."""
    with _lock:
        return dict(_stats)


def reset() -> None:
    """Zero this process's counts (tests)."""
    with _lock:
        for outcome in OUTCOMES:
            _stats[outcome] = 0
