"""MLAuditSpanProcessor: sync and batch writes, overflow, database failures, spool replay,
shutdown, SIGTERM, fork and counters. Spans are made the real way: an SDK TracerProvider with
the processor added, and a record handed over before the span ends."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connections, transaction
from django.test import override_settings
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from ml_audit import store
from ml_audit.exceptions import PredictionConflict
from ml_audit.models import PredictionEvent
from ml_audit.otel import conventions, pending
from ml_audit.otel.conventions import format_span_id, format_trace_id
from ml_audit.otel.processor import MLAuditSpanProcessor
from ml_audit.otel.spool import Spool
from ml_audit.records import PredictionRecord
from tests.factories import redacted

ROOT = Path(__file__).resolve().parents[2]
#: ``store.write_many`` as the processor module calls it, for monkeypatching.
WRITE_MANY = "ml_audit.otel.processor.store.write_many"
WAIT = 30.0  # generous upper bound for anything that should happen "soon"; never asserted on


# ------------------------------------------------------------------------------ helpers


def end_prediction(
    tracer: Tracer,
    record: PredictionRecord,
    *,
    sync: bool = False,
    latency_from_span: bool = False,
    using: str | None = None,
    start_time: int | None = None,
    end_time: int | None = None,
) -> pending.PendingWrite:
    """What the span helpers do: start the span, hand the record over, end the span."""
    span = tracer.start_span(
        conventions.prediction_span_name(record.model_name), start_time=start_time
    )
    context = span.get_span_context()
    record = dataclasses.replace(
        record,
        trace_id=format_trace_id(context.trace_id),
        span_id=format_span_id(context.span_id),
    )
    handed = pending.PendingWrite(
        record, sync=sync, latency_from_span=latency_from_span, using=using
    )
    pending.hand_over(context.trace_id, context.span_id, handed)
    span.end(end_time=end_time)
    return handed


def stored_ids(prefix: str, using: str = "default") -> list[str]:
    return list(
        PredictionEvent.objects.using(using)
        .filter(prediction_id__startswith=prefix)
        .values_list("prediction_id", flat=True)
    )


def assert_each_once(ids: list[str], expected: list[str]) -> None:
    counts = Counter(ids)
    assert sorted(counts) == sorted(expected)
    assert set(counts.values()) == {1}


MakeProcessor = Callable[..., tuple[MLAuditSpanProcessor, Tracer]]


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def make_processor(spool_dir: Path) -> Iterator[MakeProcessor]:
    """Processors on their own TracerProvider; shut down (flushed) after the test."""
    created: list[MLAuditSpanProcessor] = []

    def make(**kwargs: Any) -> tuple[MLAuditSpanProcessor, Tracer]:
        kwargs.setdefault("mode", "batch")
        kwargs.setdefault("spool_dir", spool_dir)
        kwargs.setdefault("retry_backoff_millis", 1)
        processor = MLAuditSpanProcessor(**kwargs)
        processor.shutdown_timeout = 10.0
        created.append(processor)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        return processor, provider.get_tracer("tests")

    yield make
    for processor in created:
        processor.shutdown()


class Gate:
    """Replaces ``store.write_many`` (as the processor module sees it) with a version that
    blocks until opened, and records the size of every call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.sizes: list[int] = []
        real = store.write_many

        def blocked(records: Any, *, using: str | None = None) -> store.WriteResult:
            self.sizes.append(len(records))
            self.entered.set()
            assert self.opened.wait(WAIT)
            return real(records, using=using)

        monkeypatch.setattr(WRITE_MANY, blocked)


@pytest.fixture
def gate(make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    # Depends on make_processor so that it is opened before the processors are shut down.
    blocker = Gate(monkeypatch)
    yield blocker
    blocker.opened.set()


def failing_write_many(
    monkeypatch: pytest.MonkeyPatch, failures: int, error: Exception | None = None
) -> list[int]:
    """``store.write_many`` raising ``error`` for its first ``failures`` calls; returns the
    sizes of all calls."""
    real = store.write_many
    sizes: list[int] = []

    def flaky(records: Any, *, using: str | None = None) -> store.WriteResult:
        sizes.append(len(records))
        if len(sizes) <= failures:
            raise error or OperationalError("server closed the connection unexpectedly")
        return real(records, using=using)

    monkeypatch.setattr(WRITE_MANY, flaky)
    return sizes


# ------------------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "async"}, "mode must be one of 'journal', 'batch', 'sync'"),
        ({"max_queue_size": 0}, "max_queue_size must be a positive integer."),
        ({"max_queue_size": True}, "max_queue_size must be a positive integer."),
        ({"max_batch_size": -1}, "max_batch_size must be a positive integer."),
        ({"max_queue_size": 5, "max_batch_size": 10}, "max_batch_size must be less than"),
        ({"schedule_delay_millis": 0}, "schedule_delay_millis must be a positive integer."),
        ({"queue_full_timeout_millis": -1}, "queue_full_timeout_millis must be a non-negative"),
        ({"drop_on_overflow": 1}, "drop_on_overflow must be True or False."),
        ({"retry_attempts": 1.5}, "retry_attempts must be a non-negative integer."),
        ({"retry_backoff_millis": -5}, "retry_backoff_millis must be a non-negative integer."),
        ({"spool_dir": 42}, "spool_dir must be a directory path."),
        ({"using": ""}, "using must be a database alias or None."),
    ],
)
def test_invalid_arguments_are_refused_early(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLAuditSpanProcessor(**kwargs)


def test_defaults_come_from_the_settings(tmp_path: Path) -> None:
    with override_settings(
        ML_AUDIT={"WRITE_MODE": "sync", "BATCH_MAX_SIZE": 7, "SPOOL_DIR": str(tmp_path)}
    ):
        processor = MLAuditSpanProcessor()
    assert processor.mode == "sync"
    assert processor._max_batch_size == 7
    assert processor.spool.directory == tmp_path
    assert MLAuditSpanProcessor(mode="batch").mode == "batch"


# ------------------------------------------------------------------------------ not ours


@pytest.mark.django_db
def test_spans_that_are_not_predictions_are_ignored(make_processor: MakeProcessor) -> None:
    processor, tracer = make_processor()
    with (
        tracer.start_as_current_span("GET /score", attributes={"ml_audit.prediction_id": "x"}),
        tracer.start_as_current_span("SELECT ml_audit_predictionevent"),
    ):
        pass
    processor.on_end(object())  # type: ignore[arg-type]  # not even a span
    assert processor.force_flush(1000)
    assert set(processor.stats().values()) == {0}
    assert processor._worker is None  # nothing was queued, no thread was started
    assert PredictionEvent.objects.count() == 0


# ------------------------------------------------------------------------------ sync


@pytest.mark.django_db
def test_sync_mode_row_exists_when_the_span_has_ended(make_processor: MakeProcessor) -> None:
    processor, tracer = make_processor(mode="sync")
    handed = end_prediction(tracer, redacted(prediction_id="sync-1"))
    assert handed.done.is_set()
    assert handed.error is None
    row = PredictionEvent.objects.select_related("model", "actor").get(prediction_id="sync-1")
    assert handed.event.pk == row.pk
    assert store.event_to_record(row) == handed.record
    assert processor.stats()["written"] == 1
    assert processor._worker is None


@pytest.mark.django_db
def test_a_sync_hand_over_is_written_inline_in_batch_mode(make_processor: MakeProcessor) -> None:
    processor, tracer = make_processor(mode="batch")
    handed = end_prediction(tracer, redacted(prediction_id="inline-1"), sync=True)
    assert handed.event is not None
    assert stored_ids("inline-") == ["inline-1"]
    assert processor.stats()["queued"] == 0
    assert processor._worker is None


@pytest.mark.django_db
def test_sync_duplicate_resolves_to_the_stored_row(make_processor: MakeProcessor) -> None:
    processor, tracer = make_processor(mode="sync")
    first = end_prediction(tracer, redacted(prediction_id="same"))
    again = end_prediction(tracer, redacted(prediction_id="same"))
    assert again.error is None
    assert again.event.pk == first.event.pk
    assert processor.stats()["duplicates"] == 1
    assert PredictionEvent.objects.count() == 1


@pytest.mark.django_db
def test_sync_conflict_is_reported_through_the_pending_write_and_not_spooled(
    make_processor: MakeProcessor, spool_dir: Path
) -> None:
    processor, tracer = make_processor(mode="sync")
    end_prediction(tracer, redacted(prediction_id="clash", confidence=0.25))
    handed = end_prediction(tracer, redacted(prediction_id="clash", confidence=0.75))
    assert isinstance(handed.error, PredictionConflict)
    assert handed.error.fields == ("confidence",)
    assert handed.event is None
    stats = processor.stats()
    assert (stats["conflicts"], stats["spooled"], stats["written"]) == (1, 0, 1)
    assert not spool_dir.exists()
    assert PredictionEvent.objects.get(prediction_id="clash").confidence == 0.25


@pytest.mark.django_db(transaction=True)
def test_sync_database_error_is_retried_then_spooled_and_reported(
    make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    processor, tracer = make_processor(mode="sync", retry_attempts=2)
    sizes = failing_write_many(monkeypatch, failures=100)
    handed = end_prediction(tracer, redacted(prediction_id="sync-down"))
    assert isinstance(handed.error, OperationalError)
    assert sizes == [1, 1, 1]  # the first attempt and two retries
    assert processor.stats()["spooled"] == 1
    assert not PredictionEvent.objects.filter(prediction_id="sync-down").exists()
    monkeypatch.undo()
    result = processor.replay_spool()
    assert (result.inserted, result.failed) == (1, 0)
    assert stored_ids("sync-down") == ["sync-down"]
    assert processor.stats()["replayed"] == 1


@pytest.mark.django_db
def test_sync_database_error_inside_the_callers_transaction_is_not_retried(
    make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    processor, tracer = make_processor(mode="sync", retry_attempts=3)
    sizes = failing_write_many(monkeypatch, failures=100)
    with transaction.atomic():
        handed = end_prediction(tracer, redacted(prediction_id="in-tx"))
        assert connections["default"].connection is not None  # not closed under the caller
    assert isinstance(handed.error, OperationalError)
    assert sizes == [1]
    assert processor.stats()["spooled"] == 1
    assert len(processor.spool.ready_files()) == 0  # still this process's active file
    assert processor.spool.active_records == 1


# ------------------------------------------------------------------------------ batch


@pytest.mark.django_db(transaction=True)
def test_batch_rows_appear_after_force_flush(make_processor: MakeProcessor) -> None:
    processor, tracer = make_processor(schedule_delay_millis=60_000)
    records = [redacted(prediction_id=f"batch-{i}") for i in range(30)]
    handed = [end_prediction(tracer, r) for r in records]
    assert processor.force_flush()
    assert_each_once(stored_ids("batch-"), [r.prediction_id for r in records])
    rows = PredictionEvent.objects.select_related("model", "actor").filter(
        prediction_id__startswith="batch-"
    )
    assert sorted(map(store.event_to_record, rows), key=lambda r: r.prediction_id) == sorted(
        (h.record for h in handed), key=lambda r: r.prediction_id
    )
    stats = processor.stats()
    assert (stats["queued"], stats["written"], stats["spooled"], stats["dropped"]) == (30, 30, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_one_write_many_call_per_batch(
    make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = failing_write_many(monkeypatch, failures=0)
    processor, tracer = make_processor(
        max_batch_size=50, max_queue_size=1000, schedule_delay_millis=60_000
    )
    for i in range(120):
        end_prediction(tracer, redacted(prediction_id=f"per-batch-{i}"))
    assert processor.force_flush()
    assert sizes == [50, 50, 20]
    assert len(stored_ids("per-batch-")) == 120


@pytest.mark.django_db(transaction=True)
def test_latency_is_taken_from_the_span_when_asked(make_processor: MakeProcessor) -> None:
    processor, tracer = make_processor()
    start = 1_700_000_000_000_000_000
    end_prediction(
        tracer,
        redacted(prediction_id="lat-span", latency_ms=99.0),
        latency_from_span=True,
        start_time=start,
        end_time=start + 12_500_000,
    )
    end_prediction(
        tracer,
        redacted(prediction_id="lat-given", latency_ms=99.0),
        start_time=start,
        end_time=start + 12_500_000,
    )
    assert processor.force_flush()
    assert PredictionEvent.objects.get(prediction_id="lat-span").latency_ms == 12.5
    assert PredictionEvent.objects.get(prediction_id="lat-given").latency_ms == 99.0


@pytest.mark.django_db(transaction=True)
def test_writes_run_with_instrumentation_suppressed(
    make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    real = store.write_many

    def spy(records: Any, *, using: str | None = None) -> store.WriteResult:
        seen.append((get_value(_SUPPRESS_INSTRUMENTATION_KEY), threading.current_thread().name))
        return real(records, using=using)

    monkeypatch.setattr(WRITE_MANY, spy)
    processor, tracer = make_processor()
    end_prediction(tracer, redacted(prediction_id="quiet-batch"))
    end_prediction(tracer, redacted(prediction_id="quiet-sync"), sync=True)
    assert processor.force_flush()
    assert sorted(seen) == [(True, "MainThread"), (True, "ml_audit-writer")]
    assert get_value(_SUPPRESS_INSTRUMENTATION_KEY) is None  # detached again


@pytest.mark.django_db(transaction=True)
def test_batch_conflicts_are_logged_with_fields_never_values(
    make_processor: MakeProcessor, caplog: pytest.LogCaptureFixture, spool_dir: Path
) -> None:
    processor, tracer = make_processor()
    end_prediction(tracer, redacted(prediction_id="bc-1", output={"score": 0.125}))
    assert processor.force_flush()
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        end_prediction(tracer, redacted(prediction_id="bc-1", output={"score": 0.875}))
        end_prediction(tracer, redacted(prediction_id="bc-2"))
        assert processor.force_flush()
    (message,) = [r.getMessage() for r in caplog.records if r.name == "ml_audit.otel"]
    assert "bc-1" in message
    assert "differs in: output" in message
    assert "0.875" not in message
    assert "0.125" not in message
    stats = processor.stats()
    assert (stats["conflicts"], stats["written"], stats["spooled"]) == (1, 2, 0)
    assert sorted(stored_ids("bc-")) == ["bc-1", "bc-2"]
    assert not spool_dir.exists()


@pytest.mark.django_db(transaction=True)
def test_many_threads_recording_at_once_lose_nothing(make_processor: MakeProcessor) -> None:
    processor, tracer = make_processor(
        max_queue_size=20, max_batch_size=10, schedule_delay_millis=5
    )

    def record(worker: int) -> None:
        for i in range(50):
            end_prediction(tracer, redacted(prediction_id=f"threads-{worker}-{i}"))

    threads = [threading.Thread(target=record, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert processor.force_flush()
    processor.replay_spool()
    expected = [f"threads-{w}-{i}" for w in range(4) for i in range(50)]
    assert_each_once(stored_ids("threads-"), expected)
    stats = processor.stats()
    assert stats["queued"] + stats["spooled"] == 200
    assert stats["written"] + stats["replayed"] == 200
    assert stats["dropped"] == 0


# ------------------------------------------------------------------------------ fallback


@pytest.mark.django_db(transaction=True)
def test_a_span_without_hand_over_is_persisted_from_its_attributes(
    make_processor: MakeProcessor,
) -> None:
    processor, tracer = make_processor()
    record = redacted(prediction_id="decoded-1", latency_ms=4.0, metadata={"k": [1, 2]})
    span = tracer.start_span(
        conventions.prediction_span_name(record.model_name),
        attributes=conventions.encode(record),
    )
    context = span.get_span_context()
    span.end()
    assert processor.force_flush()
    row = PredictionEvent.objects.select_related("model", "actor").get(prediction_id="decoded-1")
    assert store.event_to_record(row) == dataclasses.replace(
        record,
        trace_id=format_trace_id(context.trace_id),
        span_id=format_span_id(context.span_id),
    )
    assert processor.stats()["written"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_span_without_hand_over_is_checked_as_a_recording_call(
    make_processor: MakeProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    # Well-formed attributes with values no recording call accepts: a confidence of 7.5 and a
    # status outside the vocabulary. Nothing of it reaches the table.
    processor, tracer = make_processor()
    attributes = dict(conventions.encode(redacted(prediction_id="forged-1", confidence=0.5)))
    attributes[conventions.ATTR.CONFIDENCE] = 7.5
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        span = tracer.start_span(conventions.prediction_span_name("m"), attributes=attributes)
        span.end()  # must not raise
        attributes[conventions.ATTR.CONFIDENCE] = 0.5
        attributes[conventions.ATTR.STATUS] = "bogus"
        attributes[conventions.ATTR.PREDICTION_ID] = "forged-2"
        span = tracer.start_span(conventions.prediction_span_name("m"), attributes=attributes)
        span.end()
    assert processor.force_flush()
    assert not PredictionEvent.objects.filter(prediction_id__startswith="forged").exists()
    assert processor.stats()["dropped"] == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "ml_audit.otel"]
    assert len(messages) == 2
    assert "confidence" in messages[0]
    assert "status" in messages[1]
    assert all("cannot be decoded as a valid record" in message for message in messages)


@pytest.mark.django_db
def test_a_span_with_garbage_attributes_is_counted_dropped_and_logged(
    make_processor: MakeProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    processor, tracer = make_processor()
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        span = tracer.start_span(
            conventions.prediction_span_name("scorer"),
            attributes={"ml_audit.prediction_id": "garbage", "ml_audit.features": "{cut"},
        )
        span.end()  # must not raise
    assert processor.stats()["dropped"] == 1
    assert processor.stats()["queued"] == 0
    (message,) = [r.getMessage() for r in caplog.records if r.name == "ml_audit.otel"]
    assert "cannot be decoded" in message
    assert "span lacks ml_audit attributes" in message


@pytest.mark.django_db
def test_on_end_never_raises(
    make_processor: MakeProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    processor, tracer = make_processor()

    class Broken:
        name = conventions.prediction_span_name("scorer")

        @property
        def context(self) -> Any:
            raise RuntimeError("a span from a strange SDK")

    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        processor.on_end(Broken())  # type: ignore[arg-type]
        unredacted = PredictionRecord.create(model_name="m", model_version="1", features={})
        handed = end_prediction(tracer, unredacted)
    assert isinstance(handed.error, ValueError)
    assert processor.stats()["dropped"] == 2
    assert "a span from a strange SDK" in caplog.text
    assert "not redacted" in caplog.text


# ------------------------------------------------------------------------------ overflow


@pytest.mark.django_db(transaction=True)
def test_an_overflow_burst_is_spooled_and_nothing_is_lost(
    make_processor: MakeProcessor, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    processor, tracer = make_processor(
        max_queue_size=10, max_batch_size=5, queue_full_timeout_millis=1
    )
    ids = [f"burst-{i}" for i in range(100)]  # 10x the queue size
    for pid in ids[:5]:
        end_prediction(tracer, redacted(prediction_id=pid))
    assert gate.entered.wait(WAIT)  # the worker is stuck in its first write
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        for pid in ids[5:]:
            end_prediction(tracer, redacted(prediction_id=pid))
    stats = processor.stats()
    assert stats["spooled"] >= 85  # the queue and the blocked batch hold at most 15
    assert stats["queued"] + stats["spooled"] == 100
    assert stats["dropped"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    gate.opened.set()
    assert processor.force_flush()
    processor.replay_spool()
    assert_each_once(stored_ids("burst-"), ids)
    stats = processor.stats()
    assert stats["replayed"] == stats["spooled"]
    assert stats["written"] + stats["replayed"] == 100
    assert processor.spool.ready_files() == []


@pytest.mark.django_db(transaction=True)
def test_drop_on_overflow_drops_counts_and_logs(
    make_processor: MakeProcessor, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    processor, tracer = make_processor(
        max_queue_size=10, max_batch_size=5, queue_full_timeout_millis=0, drop_on_overflow=True
    )
    ids = [f"drop-{i}" for i in range(100)]
    for pid in ids[:5]:
        end_prediction(tracer, redacted(prediction_id=pid))
    assert gate.entered.wait(WAIT)
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        for pid in ids[5:]:
            end_prediction(tracer, redacted(prediction_id=pid))
    gate.opened.set()
    assert processor.force_flush()
    stats = processor.stats()
    assert stats["dropped"] >= 85
    assert stats["spooled"] == 0
    assert stats["queued"] + stats["dropped"] == 100
    dropped_logged = [
        pid for pid in ids if f"dropped prediction {pid}: the audit queue is full" in caplog.text
    ]
    assert len(dropped_logged) == stats["dropped"]
    assert_each_once(stored_ids("drop-"), [pid for pid in ids if pid not in dropped_logged])


# ------------------------------------------------------------------------------ database down


@pytest.mark.django_db(transaction=True)
def test_database_down_spools_then_replays_automatically_and_idempotently(
    make_processor: MakeProcessor,
    monkeypatch: pytest.MonkeyPatch,
    spool_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sizes = failing_write_many(monkeypatch, failures=3)
    processor, tracer = make_processor(retry_attempts=2, schedule_delay_millis=60_000)
    down = [f"down-{i}" for i in range(7)]
    with caplog.at_level(logging.WARNING, logger="ml_audit.otel"):
        for pid in down:
            end_prediction(tracer, redacted(prediction_id=pid))
        assert processor.force_flush()
    assert sizes == [7, 7, 7]  # one attempt, two retries: then spooled
    assert "retry 2 of 2" in caplog.text
    assert processor.stats()["spooled"] == 7
    assert stored_ids("down-") == []
    # Keep a copy of the spool as it was, to replay it again later.
    copies = tmp_path / "copies"
    copies.mkdir()
    for path in spool_dir.iterdir():
        (copies / path.with_suffix(".ready").name).write_bytes(path.read_bytes())

    back = [f"back-{i}" for i in range(3)]
    for pid in back:
        end_prediction(tracer, redacted(prediction_id=pid))
    assert processor.force_flush()
    # The successful batch triggered the replay of the spool.
    assert sizes[3:] == [3, 7]
    assert_each_once(stored_ids("down-") + stored_ids("back-"), down + back)
    stats = processor.stats()
    assert (stats["written"], stats["replayed"], stats["spooled"]) == (3, 7, 7)
    assert list(spool_dir.iterdir()) == []

    # Replaying the same spool again (twice) adds no row: ON CONFLICT makes them duplicates.
    for _ in range(2):
        for path in copies.iterdir():
            (spool_dir / path.name).write_bytes(path.read_bytes())
        result = processor.replay_spool()
        assert (result.files, result.inserted, result.duplicates) == (1, 0, 7)
        assert_each_once(stored_ids("down-") + stored_ids("back-"), down + back)
    assert PredictionEvent.objects.count() == 10


@pytest.mark.django_db(transaction=True)
def test_a_record_the_database_refuses_does_not_take_its_batch_with_it(
    make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.write_many

    def refuses_poison(records: Any, *, using: str | None = None) -> store.WriteResult:
        if any(r.prediction_id == "refused-poison" for r in records):
            raise IntegrityError("new row violates check constraint")
        return real(records, using=using)

    monkeypatch.setattr(WRITE_MANY, refuses_poison)
    processor, tracer = make_processor(retry_attempts=1, schedule_delay_millis=60_000)
    ids = ["refused-a", "refused-poison", "refused-b"]
    for pid in ids:
        end_prediction(tracer, redacted(prediction_id=pid))
    assert processor.force_flush()
    assert sorted(stored_ids("refused-")) == ["refused-a", "refused-b"]
    stats = processor.stats()
    assert (stats["written"], stats["spooled"], stats["dropped"]) == (2, 1, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_connection_is_reopened_by_the_retry(
    make_processor: MakeProcessor, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A persistent connection, so that the worker keeps it from one batch to the next.
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", None)
    processor, tracer = make_processor(retry_attempts=3, retry_backoff_millis=10)
    end_prediction(tracer, redacted(prediction_id="pg-before"))
    assert processor.force_flush()
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchall()  # the worker's connection was there, and is gone
    with caplog.at_level(logging.WARNING, logger="ml_audit.otel"):
        end_prediction(tracer, redacted(prediction_id="pg-after"))
        assert processor.force_flush()
    assert sorted(stored_ids("pg-")) == ["pg-after", "pg-before"]
    stats = processor.stats()
    assert (stats["written"], stats["spooled"]) == (2, 0)
    assert "retry 1 of 3" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_files_left_by_an_earlier_process_are_replayed_after_the_first_good_batch(
    make_processor: MakeProcessor, spool_dir: Path
) -> None:
    earlier = Spool(spool_dir)  # what a process that stopped while the database was down left
    earlier.append([redacted(prediction_id="left-1"), redacted(prediction_id="left-2")])
    earlier.rotate()
    processor, tracer = make_processor()
    end_prediction(tracer, redacted(prediction_id="left-trigger"))
    assert processor.force_flush()
    assert sorted(stored_ids("left-")) == ["left-1", "left-2", "left-trigger"]
    assert processor.stats()["replayed"] == 2
    assert list(spool_dir.iterdir()) == []


@pytest.mark.django_db(transaction=True)
def test_spooled_records_are_replayed_while_idle_once_the_database_is_back(
    make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_write_many(monkeypatch, failures=1)
    processor, tracer = make_processor(retry_attempts=0)
    processor.replay_retry_interval = 0.05
    end_prediction(tracer, redacted(prediction_id="idle-1"))
    assert processor.force_flush()
    assert processor.stats()["spooled"] == 1
    # No further traffic: the idle worker replays on its own.
    deadline = time.monotonic() + WAIT
    while processor.stats()["replayed"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert processor.stats()["replayed"] == 1
    assert stored_ids("idle-") == ["idle-1"]


# ------------------------------------------------------------------------------ shutdown, flush


@pytest.mark.django_db(transaction=True)
def test_shutdown_writes_everything_queued_and_can_be_called_twice(
    make_processor: MakeProcessor, spool_dir: Path
) -> None:
    processor, tracer = make_processor(schedule_delay_millis=600_000, max_batch_size=100)
    ids = [f"shut-{i}" for i in range(25)]
    for pid in ids:
        end_prediction(tracer, redacted(prediction_id=pid))
    assert stored_ids("shut-") == []  # waiting for the (long) schedule delay
    processor.shutdown()
    assert_each_once(stored_ids("shut-"), ids)
    worker = processor._worker
    assert worker is None
    processor.shutdown()
    # A prediction ending after shutdown is not lost: it waits in a ready spool file.
    end_prediction(tracer, redacted(prediction_id="shut-late"))
    assert processor.stats()["spooled"] == 1
    assert len(processor.spool.ready_files()) == 1
    assert processor.replay_spool().inserted == 1
    assert "shut-late" in stored_ids("shut-")


@pytest.mark.django_db(transaction=True)
def test_force_flush_honours_its_timeout_while_the_worker_is_blocked(
    make_processor: MakeProcessor, gate: Gate
) -> None:
    processor, tracer = make_processor(schedule_delay_millis=60_000)
    end_prediction(tracer, redacted(prediction_id="flush-1"))
    assert processor.force_flush(timeout_millis=50) is False
    # It returned while the write was still blocked: the timeout, not the write, ended it.
    assert gate.entered.is_set()
    assert not gate.opened.is_set()
    gate.opened.set()
    assert processor.force_flush() is True
    assert stored_ids("flush-") == ["flush-1"]


# ------------------------------------------------------------------------------ counters


@pytest.mark.django_db(transaction=True)
def test_stats_and_otel_counters_agree(make_processor: MakeProcessor) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    processor, tracer = make_processor(meter_provider=meters)
    for i in range(3):
        end_prediction(tracer, redacted(prediction_id=f"m-{i}"))
    end_prediction(tracer, redacted(prediction_id="m-0"))  # an identical duplicate
    end_prediction(tracer, redacted(prediction_id="m-1", confidence=0.9))  # a conflict
    assert processor.force_flush()
    bad = tracer.start_span(conventions.prediction_span_name("scorer"))
    bad.end()  # nothing handed over, no attributes: dropped
    stats = processor.stats()
    assert stats == {
        "queued": 5,
        "written": 3,
        "duplicates": 1,
        "conflicts": 1,
        "spooled": 0,
        "replayed": 0,
        "dropped": 1,
    }
    data = reader.get_metrics_data()
    assert data is not None
    values: dict[str, Any] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name == "ml_audit":
                for metric in scope.metrics:
                    points: Any = metric.data.data_points
                    values[metric.name] = sum(point.value for point in points)
    assert values == {f"ml_audit.records.{k}": v for k, v in stats.items() if v}
    meters.shutdown()


# ------------------------------------------------------------------------------ processes


def _subprocess_env(tmp_path: Path, database: Path) -> dict[str, str]:
    (tmp_path / "subprocess_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', "
        f"'NAME': {str(database)!r}}}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path)])
    env["DJANGO_SETTINGS_MODULE"] = "subprocess_settings"
    return env


_PRELUDE = """
import json, os, signal, sys, threading, time

import django

django.setup()
from django.core.management import call_command

call_command("migrate", verbosity=0)
from opentelemetry.sdk.trace import TracerProvider

from ml_audit import store
from ml_audit.otel.processor import MLAuditSpanProcessor
from ml_audit.otel.spool import Spool
from tests.otel.test_processor import end_prediction, redacted
"""


def _rows(database: Path, prefix: str) -> list[str]:
    with sqlite3.connect(database) as db:
        return [
            row[0]
            for row in db.execute(
                "SELECT prediction_id FROM ml_audit_predictionevent WHERE prediction_id LIKE ?",
                (prefix + "%",),
            )
        ]


def test_sigterm_flushes_the_queue_at_exit(tmp_path: Path) -> None:
    count = 40
    database = tmp_path / "sigterm.sqlite3"
    script = _PRELUDE + textwrap.dedent(
        f"""
        processor = MLAuditSpanProcessor(
            mode="batch", schedule_delay_millis=600_000, max_batch_size={count + 1},
            max_queue_size={count + 1}, spool_dir={str(tmp_path / "spool")!r},
        )
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("sigterm")
        for i in range({count}):
            end_prediction(tracer, redacted(prediction_id=f"term-{{i}}"))
        # What gunicorn and uwsgi workers do on SIGTERM: exit normally.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        print("ready", flush=True)
        while True:
            time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env=_subprocess_env(tmp_path, database),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if line.strip() != "ready":
            child.kill()
            pytest.fail(f"the script did not start: {line}{child.communicate(timeout=WAIT)[1]}")
        assert _rows(database, "term-") == []  # all still queued
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=WAIT)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert_each_once(_rows(database, "term-"), [f"term-{i}" for i in range(count)])
    assert not (tmp_path / "spool").exists()  # written, not spooled


def test_a_forked_child_writes_its_own_records_and_never_its_parents(tmp_path: Path) -> None:
    database = tmp_path / "fork.sqlite3"
    script = _PRELUDE + textwrap.dedent(
        f"""
        parent = os.getpid()
        real = store.write_many
        opened, entered = threading.Event(), threading.Event()
        written = []  # prediction ids this process wrote

        def tracked(records, *, using=None):
            if os.getpid() == parent:
                entered.set()
                opened.wait(60)
            written.extend(r.prediction_id for r in records)
            return real(records, using=using)

        store.write_many = tracked
        processor = MLAuditSpanProcessor(
            mode="batch", max_batch_size=5, max_queue_size=100, schedule_delay_millis=60_000,
            spool_dir={str(tmp_path / "spool")!r},
        )
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("fork")
        for i in range(5):  # the worker takes these and blocks in the write
            end_prediction(tracer, redacted(prediction_id=f"p1-{{i}}"))
        assert entered.wait(60)
        for i in range(3):  # these stay queued in the parent
            end_prediction(tracer, redacted(prediction_id=f"p2-{{i}}"))
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_end)
                for i in range(4):
                    end_prediction(tracer, redacted(prediction_id=f"c-{{i}}"))
                report = {{
                    "flushed": processor.force_flush(30_000),
                    "written": written,
                    "stats": processor.stats(),
                }}
                os.write(write_end, json.dumps(report).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            child = json.loads(pipe.read() or b"null")
        os.waitpid(pid, 0)
        opened.set()
        flushed = processor.force_flush(30_000)
        processor.shutdown()
        print(json.dumps({{
            "child": child,
            "parent": {{"flushed": flushed, "written": written, "stats": processor.stats()}},
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_subprocess_env(tmp_path, database),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    child, parent = report["child"], report["parent"]
    assert child["flushed"] is True
    assert child["written"] == [f"c-{i}" for i in range(4)]
    assert (child["stats"]["queued"], child["stats"]["written"]) == (4, 4)
    assert parent["flushed"] is True
    assert parent["written"] == [f"p1-{i}" for i in range(5)] + [f"p2-{i}" for i in range(3)]
    assert (parent["stats"]["written"], parent["stats"]["duplicates"]) == (8, 0)
    expected = [f"p1-{i}" for i in range(5)] + [f"p2-{i}" for i in range(3)]
    assert_each_once(_rows(database, "p"), expected)
    assert_each_once(_rows(database, "c-"), [f"c-{i}" for i in range(4)])


@pytest.mark.django_db(transaction=True)
def test_a_foreign_span_claiming_redaction_is_redacted_before_it_is_stored(
    make_processor: MakeProcessor,
) -> None:
    """A span named like ours but not from our helpers: its attributes say "redacted", its
    features hold PII in clear. The writer redacts it like any other record."""
    processor, tracer = make_processor()
    forged = dataclasses.replace(
        redacted(prediction_id="forged-1"),
        features={"email": "jane.doe@example.com", "note": "call +44 7700 900123", "age": 30},
        error_type="",
    )
    span = tracer.start_span(
        conventions.prediction_span_name(forged.model_name),
        attributes=conventions.encode(forged),
    )
    span.end()
    assert processor.force_flush()
    row = PredictionEvent.objects.get(prediction_id="forged-1")
    assert "jane.doe@example.com" not in json.dumps(row.features)
    assert "7700 900123" not in json.dumps(row.features)
    assert row.features["age"] == 30
    assert store.verify_event(row)
