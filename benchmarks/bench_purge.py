"""How long a purge of ``--rows`` predictions blocks recording (issue #12).

Loads ``--rows`` predictions (default 1,000,000, + 10% explanations) with PostgreSQL ``COPY``
(``bench_read_api.load``: placeholder hashes, which a purge does not read), then, while a
separate recording process calls ``record_prediction_event`` in a loop (synchronous writes,
one prediction per call, its own connection), runs ``ml_audit.retention.run_purge`` over all of
them (a one-day retention, with the floor overridden for the benchmark) in batches of
``--batch-size``. Reports the purge's time and rate and the recording loop's latencies before
and during the purge: the longest single call during the purge is the longest stall.
Target: no stall above 1 s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ml_audit_dev \\
        python benchmarks/bench_purge.py [--rows 1000000] [--batch-size 1000] [--json]

The database is DATABASE_URL's name + ``_bench_purge``, dropped and re-created each run (a
purge consumes its data). The purge runs as the connecting role (a superuser here; the hatch
lets superusers through: see docs/retention.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _django import ROOT, setup_postgres

BENCH_SETTINGS: dict[str, Any] = {
    "OTEL_ENABLED": False,
    "WRITE_MODE": "sync",
    "RETENTION": {"DEFAULT_DAYS": 1},
    "RETENTION_FLOOR_OVERRIDE": "benchmark data: synthetic, no personal data",
}


def setup(*, recreate: bool) -> None:
    setup_postgres("bench_purge", "_bench_purge", BENCH_SETTINGS, recreate=recreate)


def record_loop(stop_file: Path, out_file: Path) -> None:
    """The recording process: one prediction per call until ``stop_file`` exists; writes
    ``[(start, seconds)]`` of every call to ``out_file``."""
    setup(recreate=False)
    from ml_audit.services import ActorPayload, record_prediction_event

    calls: list[tuple[float, float]] = []
    i = 0
    while not stop_file.exists():
        started = time.perf_counter()
        record_prediction_event(
            model_name="model_00",
            model_version="1.0",
            features={"f": i},
            output={"score": 0.5},
            actor=ActorPayload("user", "recorder", tenant_id="acme"),
        )
        calls.append((time.time(), time.perf_counter() - started))
        i += 1
        time.sleep(0.005)  # ~150 predictions a second: a busy service, not a flood
    out_file.write_text(json.dumps(calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--recorder", nargs=2, metavar=("STOP", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recorder:
        record_loop(Path(args.recorder[0]), Path(args.recorder[1]))
        return

    setup(recreate=True)
    from bench_read_api import load
    from django.db import connection

    from ml_audit.retention import plan_purge, run_purge

    loaded = load(args.rows)
    say = (lambda *_: None) if args.json else print
    say(
        f"loaded {args.rows:,} predictions + {loaded['explanations']:,} explanations "
        f"in {loaded['total_s']:.1f} s"
    )

    work = Path(tempfile.mkdtemp(prefix="bench-purge-"))
    stop, out = work / "stop", work / "calls.json"
    recorder = subprocess.Popen(
        [sys.executable, __file__, "--recorder", str(stop), str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    time.sleep(5)  # the recorder's start-up and a baseline
    groups = plan_purge()
    planned = sum(group.count for group in groups)
    purge_started = time.time()
    t0 = time.perf_counter()
    result = run_purge(ran_by="bench_purge", execute=True, batch_size=args.batch_size)
    purge_s = time.perf_counter() - t0
    purge_ended = time.time()
    time.sleep(1)
    stop.touch()
    recorder.wait(timeout=60)
    calls = json.loads(out.read_text())
    during = [seconds for started, seconds in calls if purge_started <= started <= purge_ended]
    before = [seconds for started, seconds in calls if started < purge_started]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ml_audit_predictionevent")
        left = cursor.fetchone()[0]
    report = {
        "rows": args.rows,
        "batch_size": args.batch_size,
        "planned": planned,
        "removed": result.counts,
        "batches": len(result.records),
        "purge_s": round(purge_s, 1),
        "rows_per_s": round(result.total / purge_s),
        "left_after": left,
        "recording_calls_during": len(during),
        "recording_p50_ms_before": round(statistics.median(before) * 1000, 2) if before else None,
        "recording_p50_ms_during": round(statistics.median(during) * 1000, 2) if during else None,
        "recording_p99_ms_during": (
            round(statistics.quantiles(during, n=100)[98] * 1000, 1) if len(during) > 100 else None
        ),
        "longest_stall_ms": round(max(during) * 1000, 1) if during else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key:>26}: {value}")
    stall = report["longest_stall_ms"]
    verdict = "OK" if stall is not None and stall <= 1000 else "ABOVE TARGET"
    print(f"longest recording stall during the purge: {stall} ms (target <= 1000 ms): {verdict}")


if __name__ == "__main__":
    main()
