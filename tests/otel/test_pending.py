"""The hand-over of records between the span helpers and the processor (no lock on the way)."""

from __future__ import annotations

import logging
import threading

import pytest

from ml_audit.otel import pending
from ml_audit.records import PredictionRecord
from ml_audit.redaction import RedactionPolicy


def record(name: str = "p") -> PredictionRecord:
    draft = PredictionRecord.create(
        model_name="m", model_version="1", features={"a": 1}, prediction_id=name
    )
    return draft.redact(RedactionPolicy(), frozenset())


def test_hand_over_and_take_back() -> None:
    handed = pending.PendingWrite(record(), latency_from_span=True)
    pending.hand_over(1, 2, handed)
    assert pending.take(1, 2) is handed
    assert pending.take(1, 2) is None
    assert not handed.done.is_set()
    handed.resolve("row")
    assert handed.done.is_set()
    assert handed.event == "row"
    assert "prediction_id='p'" in repr(handed)


def test_the_oldest_hand_overs_beyond_the_bound_are_forgotten_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pending, "MAX_PENDING", 3)
    caplog.set_level(logging.ERROR, logger="ml_audit.otel")
    for i in range(5):
        pending.hand_over(100, i, pending.PendingWrite(record(f"p{i}")))
    assert [pending.take(100, i) is not None for i in range(5)] == [False, False, True, True, True]
    assert "prediction p0 was handed over" in caplog.text
    assert "prediction p1 was handed over" in caplog.text


def test_concurrent_hand_overs_are_all_taken_back() -> None:
    handed = {(t, i): pending.PendingWrite(record()) for t in range(4) for i in range(500)}

    def run(thread: int) -> None:
        for i in range(500):
            pending.hand_over(thread, i, handed[thread, i])
            assert pending.take(thread, i) is handed[thread, i]

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(pending.take(t, i) is None for t, i in handed)


def test_latency_is_the_span_duration_when_asked_for() -> None:
    handed = pending.PendingWrite(record(), latency_from_span=True)
    assert pending.latency_ms(handed, 1_000_000, 3_500_000) == 2.5
    assert pending.latency_ms(handed, None, 3_500_000) is None
    assert pending.finalize(handed, 1_000_000, 3_500_000).latency_ms == 2.5
    assert pending.latency_ms(pending.PendingWrite(record()), 1, 2) is None
