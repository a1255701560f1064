"""Sustained batch ingest: the batch span processor against raw ``bulk_create``.

N redacted records (20 features, one of them an e-mail that was redacted) go through
``MLAuditSpanProcessor`` in batch mode: for each, the benchmark thread starts a span, hands the
record over (as the span helpers do) and ends the span; the background worker writes them with
one ``store.write_many`` per batch. The clock runs from just before the first span starts to the
return of ``force_flush()``. The baseline writes equivalent rows with
``PredictionEvent.objects.bulk_create`` in chunks of the same batch size (building the model
instances is timed too; content hash and fingerprint are constants, as in
``bench_recording.py``). Rounds alternate between the two, each with fresh prediction ids, so
that both see the same table size and machine state; figures are medians over the rounds.

The queue is bounded (default 10 000, the setting's default) and the benchmark thread is let
wait for room (``queue_full_timeout_millis`` of a minute) rather than spool: this measures what
the writer sustains, not how fast a burst can be put on disk. ``spooled`` is printed and must
be 0. Record building and redaction happen before the clock starts (that is the caller's cost,
measured by ``bench_recording.py``); ``--with-attributes`` also puts the encoded ``ml_audit.*``
attributes on every span, as the span helpers do.

    python benchmarks/bench_batch_ingest.py                      # SQLite file
    DATABASE_URL=postgres://postgres@127.0.0.1/bench python benchmarks/bench_batch_ingest.py

``--conn-max-age`` sets ``CONN_MAX_AGE`` (default Django's 0: the worker, which calls
``close_old_connections()`` before each batch like a request does, then reconnects per batch).

Target: processor >= 0.9x the rows/s of bulk_create on PostgreSQL.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import pstats
import statistics
import tempfile
import time
from typing import Any

from _django import bench_features as features
from _django import setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="records per round and method")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each method")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--queue-size", type=int, default=10000)
    parser.add_argument("--conn-max-age", type=int, default=0, help="-1 for None (persistent)")
    parser.add_argument("--with-attributes", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the worker thread")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    backend = setup()

    from django.db import connections
    from opentelemetry.sdk.trace import TracerProvider

    from ml_audit.conf import audit_settings
    from ml_audit.models import PredictionEvent
    from ml_audit.otel import conventions, pending
    from ml_audit.otel.processor import MLAuditSpanProcessor
    from ml_audit.records import ActorPayload, PredictionRecord
    from ml_audit.services import record_prediction_event

    connections["default"].settings_dict["CONN_MAX_AGE"] = (
        None if args.conn_max_age < 0 else args.conn_max_age
    )
    actor = ActorPayload("user", "bench-user", tenant_id="bench", ip_address="10.0.0.1")
    warm = record_prediction_event("bench_model", "1.0", features(0), {"score": 0.5}, actor=actor)
    model_id, actor_id = warm.model_id, warm.actor_id
    policy, payloads = audit_settings.redaction_policy, audit_settings.REDACT_PAYLOADS

    def records(tag: str) -> list[PredictionRecord]:
        return [
            PredictionRecord.create(
                model_name="bench_model",
                model_version="1.0",
                features=features(i),
                output={"score": 0.5, "label": "clean"},
                decision_outcome="clean",
                confidence=0.5,
                actor=actor,
                environment="bench",
                latency_ms=1.5,
                prediction_id=f"{tag}-{i}",
            ).redact(policy, payloads)
            for i in range(args.count)
        ]

    processor = MLAuditSpanProcessor(
        mode="batch",
        max_queue_size=args.queue_size,
        max_batch_size=args.batch_size,
        queue_full_timeout_millis=60_000,
        spool_dir=tempfile.mkdtemp(prefix="ml-audit-bench-spool-"),
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")
    name = conventions.prediction_span_name("bench_model")

    def through_processor(batch: list[PredictionRecord]) -> float:
        start = time.perf_counter()
        for record in batch:
            span = tracer.start_span(name)
            context = span.get_span_context()
            record = dataclasses.replace(
                record,
                trace_id=conventions.format_trace_id(context.trace_id),
                span_id=conventions.format_span_id(context.span_id),
            )
            if args.with_attributes:
                span.set_attributes(conventions.encode(record))
            pending.hand_over(context.trace_id, context.span_id, pending.PendingWrite(record))
            span.end()
        if not processor.force_flush(timeout_millis=600_000):
            raise SystemExit("force_flush timed out")
        return time.perf_counter() - start

    def bulk_create(batch: list[PredictionRecord]) -> float:
        start = time.perf_counter()
        for offset in range(0, len(batch), args.batch_size):
            rows = []
            for record in batch[offset : offset + args.batch_size]:
                rows.append(
                    PredictionEvent(
                        id=record.event_id,
                        prediction_id=record.prediction_id,
                        timestamp=record.timestamp,
                        environment="bench",
                        model_id=model_id,
                        actor_id=actor_id,
                        tenant_id="bench",
                        client_ip="10.0.0.1",
                        features=record.features,
                        redaction=record.redaction,
                        input_fingerprint="0" * 64,
                        output=record.output,
                        confidence=0.5,
                        decision_outcome="clean",
                        latency_ms=1.5,
                        content_hash="0" * 64,
                    )
                )
            PredictionEvent.objects.bulk_create(rows)
        return time.perf_counter() - start

    # Warm-up: the worker thread, its connection, the id caches, statement plans.
    through_processor(records("warm-lib")[: args.batch_size * 2])
    bulk_create(records("warm-raw")[: args.batch_size * 2])

    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        _profile_worker(processor, profiler)

    lib_times: list[float] = []
    raw_times: list[float] = []
    for n in range(args.rounds):
        lib_records, raw_records = records(f"lib{n}"), records(f"raw{n}")
        lib_times.append(through_processor(lib_records))
        raw_times.append(bulk_create(raw_records))

    processor.shutdown()
    stats = processor.stats()
    lib_rate = args.count / statistics.median(lib_times)
    raw_rate = args.count / statistics.median(raw_times)
    result = {
        "backend": backend,
        "count": args.count,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "conn_max_age": args.conn_max_age,
        "with_attributes": args.with_attributes,
        "processor_rows_per_s": lib_rate,
        "bulk_create_rows_per_s": raw_rate,
        "ratio": lib_rate / raw_rate,
        "processor_seconds": lib_times,
        "bulk_create_seconds": raw_times,
        "stats": stats,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"backend: {backend}, {args.count} records x {args.rounds} rounds of each, "
            f"batch size {args.batch_size}, CONN_MAX_AGE {args.conn_max_age}"
            + (", span attributes on" if args.with_attributes else "")
        )
        print(f"  batch processor  {lib_rate:10.0f} rows/s  (rounds: {_secs(lib_times)})")
        print(f"  bulk_create      {raw_rate:10.0f} rows/s  (rounds: {_secs(raw_times)})")
        print(f"  ratio (processor / bulk_create, medians): {result['ratio']:.3f}")
        print(f"  processor stats: {stats}")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def _secs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}s" for t in times)


def _profile_worker(processor: Any, profiler: cProfile.Profile) -> None:
    """Profile every batch the worker processes from now on."""
    original = processor._process

    def profiled(batch: Any, **kwargs: Any) -> None:
        profiler.enable()
        try:
            original(batch, **kwargs)
        finally:
            profiler.disable()

    processor._process = profiled


if __name__ == "__main__":
    main()
