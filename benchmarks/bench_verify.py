"""Time of ``ml_audit_verify`` over a large sealed audit trail (issue #12).

Loads ``--rows`` predictions (default 1,000,000) with PostgreSQL ``COPY`` — the rows of
``bench_read_api.py`` (+ 10% explanations), but with real content hashes, computed by the
general path (``PredictionRecord.content_hash()``, ``ExplanationRecord.stored_fields()``), not by
the verifier's own row hashing — then seals them all (``seal_all``: the time is printed, it is
what catching up costs the sealer), and times :func:`ml_audit.sealing.verify` over the whole
trail ``--repeat`` times (median and spread). Every run must report no finding. Target: 1M
predictions in <= 10 s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ml_audit_dev \\
        python benchmarks/bench_verify.py [--rows 1000000] [--repeat 3] [--reuse] [--profile]

The database is DATABASE_URL's name + ``_bench_verify``, dropped and re-created unless
``--reuse`` finds it loaded and sealed by an earlier run with the same ``--rows``.
``--profile`` runs one verification under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import pstats
import random
import statistics
import time
import uuid
from typing import Any

from _django import setup_postgres

META_TABLE = "bench_verify_meta"
KEY = "bench-verify-key-" + "x" * 32


def setup(reuse: bool) -> None:
    setup_postgres(
        "bench_verify",
        "_bench_verify",
        {"OTEL_ENABLED": False, "SEAL_KEY": KEY, "SEAL_LAG_SECONDS": 0},
        recreate=not reuse,
    )


def reusable(rows: int) -> dict[str, Any] | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [META_TABLE])
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute(f"SELECT meta FROM {META_TABLE}")
        found = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM ml_audit_predictionevent")
        predictions = cursor.fetchone()[0]
    if found is None:
        return None
    meta = found[0] if isinstance(found[0], dict) else json.loads(found[0])
    return meta if meta.get("rows") == rows == predictions else None


def load(rows: int) -> dict[str, Any]:
    """COPY the predictions and explanations with their true content hashes; seal them all."""
    from bench_read_api import MODELS, TENANTS, prediction_rows, uuid7_at
    from django.db import connection, transaction

    from ml_audit.canonical import sha256_hex
    from ml_audit.explanation_records import ExplanationRecord
    from ml_audit.models import ModelVersion, RequestingActor
    from ml_audit.normalise import to_json
    from ml_audit.records import ActorPayload, PredictionRecord
    from ml_audit.sealing import seal_all

    t0 = time.perf_counter()
    models = ModelVersion.objects.bulk_create(
        ModelVersion(model_name=f"model_{m:02d}", version="1.0") for m in range(MODELS)
    )
    actors = RequestingActor.objects.bulk_create(
        RequestingActor(actor_type="user", actor_id=f"user-{a:04d}", tenant_id=TENANTS[a % 4])
        for a in range(1000)
    )
    model_of = {m.pk: m for m in models}
    actor_of = {a.pk: a for a in actors}
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=91)).replace(microsecond=0)
    explained: list[tuple[str, dt.datetime]] = []
    with transaction.atomic(), connection.cursor() as cursor:
        sql = (
            "COPY ml_audit_predictionevent (id, prediction_id, timestamp, trace_id, span_id, "
            "parent_span_id, correlation_id, environment, model_id, actor_id, tenant_id, "
            "client_ip, user_agent, auth_context, features, redaction, input_fingerprint, "
            "output, confidence, decision_outcome, status, error_type, error_message, "
            "latency_ms, metadata, content_hash, subject_ref) FROM STDIN"
        )
        rows_in = prediction_rows(
            rows, start, list(model_of), [(a.pk, a.tenant_id) for a in actors]
        )
        with cursor.copy(sql) as copy:
            for i, row in enumerate(rows_in):
                row = list(row)
                # As the writer stores them (normalised: e.g. -0.0 becomes 0.0).
                for index, name in ((14, "features"), (17, "output")):
                    row[index] = json.dumps(to_json(json.loads(row[index]), name))
                model, actor = model_of[row[8]], actor_of[row[9]]
                record = PredictionRecord(
                    event_id=uuid.UUID(row[0]),
                    prediction_id=row[1],
                    timestamp=row[2],
                    model_name=model.model_name,
                    model_version=model.version,
                    environment=row[7],
                    actor=ActorPayload.stored(
                        actor_type=actor.actor_type,
                        actor_id=actor.actor_id,
                        tenant_id=actor.tenant_id or None,
                        ip_address=row[11],
                        user_agent=row[12] or None,
                        auth_context=json.loads(row[13]) or None,
                    ),
                    features=json.loads(row[14]),
                    output=json.loads(row[17]),
                    confidence=row[18],
                    decision_outcome=row[19],
                    status=row[20],
                    error_type=row[21],
                    error_message=row[22],
                    latency_ms=row[23],
                    metadata=json.loads(row[24]),
                    trace_id=row[3],
                    span_id=row[4],
                    parent_span_id=row[5],
                    correlation_id=row[6],
                    redaction=json.loads(row[15]),
                    subject_ref=row[26],
                )
                row[16] = record.input_fingerprint
                row[25] = _content_hash(record)
                copy.write_row(row)
                if i % 10 == 3:
                    explained.append((row[0], row[2]))
        rng = random.Random(5)
        sql = (
            "COPY ml_audit_explanation (id, prediction_id, revision, method, method_version, "
            "payload, summary_text, status, generated_at, created_at, content_hash) FROM STDIN"
        )
        with cursor.copy(sql) as copy:
            for prediction_pk, when in explained:
                later = when + dt.timedelta(seconds=1)
                explanation_id = uuid7_at(later, rng)
                attributions = {f"f{j}": round(rng.gauss(0, 0.2), 4) for j in range(8)}
                payload = to_json({"attributions": attributions, "base_value": 0.5}, "payload")
                record_e = ExplanationRecord(
                    method="shap",
                    method_version="0.46",
                    payload=payload,
                    summary_text="f3 and f5 drove the score.",
                    status="success",
                    generated_at=later,
                )
                content_hash = sha256_hex(
                    record_e.stored_fields(
                        explanation_id=explanation_id,
                        prediction_pk=uuid.UUID(prediction_pk),
                        revision=1,
                        created_at=later,
                    )
                )
                copy.write_row(
                    (
                        str(explanation_id),
                        prediction_pk,
                        1,
                        "shap",
                        "0.46",
                        json.dumps(payload),
                        "f3 and f5 drove the score.",
                        "success",
                        later,
                        later,
                        content_hash,
                    )
                )
    t_loaded = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # visibility map: index-only anti-joins
    seals = seal_all(max_rows=100_000)
    t_sealed = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    meta = {
        "rows": rows,
        "explanations": len(explained),
        "seals": len(seals),
        "load_s": round(t_loaded - t0, 1),
        "seal_s": round(t_sealed - t_loaded, 1),
    }
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {META_TABLE} (meta jsonb NOT NULL)")
        cursor.execute(f"INSERT INTO {META_TABLE} VALUES (%s)", [json.dumps(meta)])
    return meta


def _content_hash(record: Any) -> str:
    """The general path's content hash (``PredictionRecord.content_hash``)."""
    return str(record.content_hash())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    setup(args.reuse)
    meta = reusable(args.rows) if args.reuse else None
    if meta is None:
        print(f"loading and sealing {args.rows:,} predictions ...", flush=True)
        meta = load(args.rows)
    else:
        print("reusing the loaded, sealed database (--reuse)", flush=True)
    print(f"trail: {json.dumps(meta)}", flush=True)
    from ml_audit.sealing import verify

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        report = verify()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        assert report.ok, report.lines()
    times = []
    for _ in range(args.repeat):
        report = verify()
        assert report.ok, report.lines()
        times.append(report.seconds)
        print(f"  verify: {report.seconds:.2f} s  checked {report.checked}", flush=True)
    median = statistics.median(times)
    print(
        f"verify {args.rows:,} predictions (+{meta['explanations']:,} explanations, "
        f"{meta['seals']} seals): median {median:.2f} s "
        f"(min {min(times):.2f}, max {max(times):.2f}; target <= 10 s)"
    )


if __name__ == "__main__":
    main()
