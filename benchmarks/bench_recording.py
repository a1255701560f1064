"""Cost of ``record_prediction_event`` against a raw ``PredictionEvent.objects.create``.

Both write the same row (20 features, one of them an e-mail that gets redacted, and a trace
and span id) in autocommit mode, interleaved call by call so that both see the same machine and
database state. The baseline skips everything the library adds (validation, JSON normalisation,
redaction, hashing, idempotency); the ratio of the medians is the library's overhead.

    python benchmarks/bench_recording.py                      # SQLite file
    DATABASE_URL=postgres://postgres@127.0.0.1/bench python benchmarks/bench_recording.py

Target (issue #2): ratio <= 1.3 on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time

from _django import bench_features as features
from _django import setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="calls of each kind")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    backend = setup()

    from ml_audit.models import PredictionEvent
    from ml_audit.records import uuid7
    from ml_audit.services import ActorPayload, record_prediction_event

    actor = ActorPayload("user", "bench-user", tenant_id="bench", ip_address="10.0.0.1")
    warm = record_prediction_event("bench_model", "1.0", features(0), {"score": 0.5}, actor=actor)
    model_id, actor_id = warm.model_id, warm.actor_id

    def library(i: int) -> None:
        record_prediction_event(
            "bench_model",
            "1.0",
            features(i),
            {"score": 0.5, "label": "clean"},
            decision_outcome="clean",
            confidence=0.5,
            actor=actor,
            environment="bench",
            latency_ms=1.5,
            prediction_id=f"lib-{i}",
        )

    def raw(i: int) -> None:
        redacted = features(i)
        redacted["email"] = "*****"
        PredictionEvent.objects.create(
            id=uuid7(),
            prediction_id=f"raw-{i}",
            timestamp=warm.timestamp,
            # The same row: recorded predictions carry their span's ids (and so feed the
            # trace_id index), so the baseline's rows do too.
            trace_id=secrets.token_hex(16),
            span_id=secrets.token_hex(8),
            environment="bench",
            model_id=model_id,
            actor_id=actor_id,
            tenant_id="bench",
            client_ip="10.0.0.1",
            features=redacted,
            redaction={"policy": "x", "paths": {"features": ["email"]}},
            input_fingerprint="0" * 64,
            output={"score": 0.5, "label": "clean"},
            confidence=0.5,
            decision_outcome="clean",
            latency_ms=1.5,
            content_hash="0" * 64,
        )

    for i in range(1, 51):  # warm-up: connections, caches, statement plans
        library(-i)
        raw(-i)

    lib_times: list[float] = []
    raw_times: list[float] = []
    for i in range(args.count):
        t0 = time.perf_counter()
        raw(i)
        t1 = time.perf_counter()
        library(i)
        t2 = time.perf_counter()
        raw_times.append(t1 - t0)
        lib_times.append(t2 - t1)

    def summary(times: list[float]) -> dict[str, float]:
        ordered = sorted(times)
        return {
            "median_us": statistics.median(ordered) * 1e6,
            "p90_us": ordered[int(len(ordered) * 0.9)] * 1e6,
        }

    result = {
        "backend": backend,
        "count": args.count,
        "raw_objects_create": summary(raw_times),
        "record_prediction_event": summary(lib_times),
    }
    result["ratio_of_medians"] = (
        result["record_prediction_event"]["median_us"] / result["raw_objects_create"]["median_us"]
    )
    if args.json:
        print(json.dumps(result))
        return
    print(f"backend: {backend}, {args.count} calls of each kind, interleaved")
    for name in ("raw_objects_create", "record_prediction_event"):
        s = result[name]
        print(f"  {name:<26} median {s['median_us']:9.1f} us   p90 {s['p90_us']:9.1f} us")
    print(f"  ratio (record / raw, medians): {result['ratio_of_medians']:.3f}")


if __name__ == "__main__":
    main()
