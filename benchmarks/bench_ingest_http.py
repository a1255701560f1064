"""Audit spans persisted per second through the OTLP/HTTP ingest endpoint, against the
in-process batch writer, on the same records in the same run.

The endpoint is served by gunicorn (``tests/ingest/server.py``: ``--workers`` sync workers,
default 2, one per core of the target machine) in processes of their own, on 127.0.0.1, and
writes to the benchmark database. Each round sends ``--count`` prediction spans (20 features,
one of them an e-mail address, redacted by the sender as ``ml_audit`` redacts; the server
validates and redacts them again) as OTLP protobuf requests of ``--batch-size`` spans,
gzipped, from ``--clients`` client threads, as an OpenTelemetry exporter or Collector sends
them. The clock runs from the first request to the last response; every response must be a
200 without a rejected span. Bodies are encoded before the clock starts (the sender's cost).

The baseline is the in-process batch writer (``MLAuditSpanProcessor`` in batch mode, batches of
the same size, as ``bench_batch_ingest.py`` runs it) writing the same records with fresh ids.
Rounds alternate between the two; figures are medians over the rounds.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python benchmarks/bench_ingest_http.py

Targets: >= 5,000 audit spans/s through the endpoint on 2 cores, >= 0.5x the in-process writer.
``--profile`` runs one request's server-side work in this process under cProfile instead.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gzip
import http.client
import json
import pstats
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _django import bench_features as features
from _django import setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20480, help="spans per round and method")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512, help="spans per request")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--no-gzip", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    backend = setup()

    from django.db import connections
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ml_audit.conf import audit_settings
    from ml_audit.ingest.auth import issue
    from ml_audit.models import PredictionEvent
    from ml_audit.otel import conventions, pending
    from ml_audit.otel.processor import MLAuditSpanProcessor
    from ml_audit.records import ActorPayload, PredictionRecord
    from tests.ingest.server import database_url, gunicorn

    policy, payloads = audit_settings.redaction_policy, audit_settings.REDACT_PAYLOADS
    actor = ActorPayload("service", "bench-svc", tenant_id="bench", ip_address="10.0.0.1")

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

    # The sender: spans by the ml_audit conventions, encoded by the OTLP exporter's encoder.
    exporter = InMemorySpanExporter()
    sender = TracerProvider(shutdown_on_exit=False)
    sender.add_span_processor(SimpleSpanProcessor(exporter))
    sender_tracer = sender.get_tracer("bench-sender")
    name = conventions.prediction_span_name("bench_model")

    def bodies(batch: list[PredictionRecord]) -> list[bytes]:
        result = []
        for offset in range(0, len(batch), args.batch_size):
            exporter.clear()
            for record in batch[offset : offset + args.batch_size]:
                sender_tracer.start_span(
                    name, attributes=conventions.encode(record, openinference=False)
                ).end()
            body = encode_spans(exporter.get_finished_spans()).SerializeToString()
            result.append(body if args.no_gzip else gzip.compress(body, compresslevel=6))
        return result

    token = issue("bench-svc", ["bench"])[1]
    headers = {
        "Content-Type": "application/x-protobuf",
        "Authorization": f"Bearer {token}",
    }
    if not args.no_gzip:
        headers["Content-Encoding"] = "gzip"

    if args.profile:
        _profile_one_request(bodies(records("profile")[: args.batch_size])[0], headers)
        return

    processor = MLAuditSpanProcessor(
        mode="batch",
        max_queue_size=max(10_000, args.batch_size * 4),
        max_batch_size=args.batch_size,
        queue_full_timeout_millis=60_000,
        spool_dir=tempfile.mkdtemp(prefix="ml-audit-bench-spool-"),
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")

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
            pending.hand_over(context.trace_id, context.span_id, pending.PendingWrite(record))
            span.end()
        if not processor.force_flush(timeout_millis=600_000):
            raise SystemExit("force_flush timed out")
        return time.perf_counter() - start

    def through_endpoint(url: str, requests: list[bytes]) -> float:
        parts = urlsplit(url)
        queue = list(reversed(requests))
        lock = threading.Lock()
        failures: list[str] = []

        def client() -> None:
            while True:
                with lock:
                    if not queue or failures:
                        return
                    body = queue.pop()
                connection = http.client.HTTPConnection(
                    parts.hostname or "127.0.0.1", parts.port, timeout=300
                )
                try:
                    connection.request("POST", parts.path, body=body, headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                finally:
                    connection.close()
                if response.status != 200 or answer:  # an empty message: nothing rejected
                    with lock:
                        failures.append(f"{response.status}: {answer[:300]!r}")

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        if failures:
            raise SystemExit(f"the endpoint refused requests: {failures[:3]}")
        return elapsed

    log = Path(tempfile.mkdtemp(prefix="ml-audit-bench-ingest-")) / "gunicorn.log"
    url_of_db = database_url(connections["default"].settings_dict)
    http_times: list[float] = []
    lib_times: list[float] = []
    with gunicorn(url_of_db, log, workers=args.workers) as url:
        # Warm-up: workers, their connections, id caches, statement plans.
        through_endpoint(url, bodies(records("warm-http")[: args.batch_size * 4]))
        through_processor(records("warm-lib")[: args.batch_size * 2])
        for n in range(args.rounds):
            requests = bodies(records(f"http{n}"))
            http_times.append(through_endpoint(url, requests))
            lib_times.append(through_processor(records(f"lib{n}")))
            stored = PredictionEvent.objects.filter(prediction_id__startswith=f"http{n}-").count()
            if stored != args.count:
                raise SystemExit(f"round {n}: {stored} of {args.count} spans stored")
    processor.shutdown()

    http_rate = args.count / statistics.median(http_times)
    lib_rate = args.count / statistics.median(lib_times)
    result: dict[str, Any] = {
        "backend": backend,
        "count": args.count,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "clients": args.clients,
        "gzip": not args.no_gzip,
        "endpoint_spans_per_s": http_rate,
        "in_process_writer_spans_per_s": lib_rate,
        "ratio": http_rate / lib_rate,
        "endpoint_seconds": http_times,
        "in_process_seconds": lib_times,
        "processor_stats": processor.stats(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"backend: {backend}, {args.count} spans x {args.rounds} rounds of each, "
        f"{args.batch_size} spans per request{'' if args.no_gzip else ' (gzip)'}, "
        f"{args.workers} gunicorn workers, {args.clients} clients"
    )
    print(f"  OTLP/HTTP endpoint     {http_rate:10.0f} spans/s  (rounds: {_secs(http_times)})")
    print(f"  in-process writer      {lib_rate:10.0f} spans/s  (rounds: {_secs(lib_times)})")
    print(f"  ratio (endpoint / in-process, medians): {result['ratio']:.3f}")


def _secs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}s" for t in times)


def _profile_one_request(body: bytes, headers: dict[str, str]) -> None:
    """The server's work on one request (the view, called with a built request), profiled."""
    from django.test import RequestFactory

    from ml_audit.ingest.views import traces

    extra: dict[str, Any] = {
        "HTTP_AUTHORIZATION": headers["Authorization"],
        **({"HTTP_CONTENT_ENCODING": "gzip"} if "Content-Encoding" in headers else {}),
    }
    request = RequestFactory().post(
        "/otlp/v1/traces", data=body, content_type="application/x-protobuf", **extra
    )
    profiler = cProfile.Profile()
    profiler.enable()
    response = traces(request)
    profiler.disable()
    print("status", response.status_code, response.content[:200])
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
