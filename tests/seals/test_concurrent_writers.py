"""No false alarm: 8 processes record predictions (sync writes, batch writes through the span
processor's worker, explanation revisions, access-log rows) while another process seals over
and over with no lag at all; then a last seal, and verify finds nothing. PostgreSQL only."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from typing import Any

import pytest
from django.conf import settings
from django.db import connections

from ml_audit import store
from ml_audit.conf import audit_settings
from ml_audit.models import PredictionEvent, Seal, SealMember
from ml_audit.otel import setup
from ml_audit.otel.spans import prediction_span
from ml_audit.sealing import seal_pending
from ml_audit.sealing.verifier import verify
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event
from tests.seals.helpers import SEAL_SETTINGS, access_row

pytestmark = pytest.mark.postgres

WRITERS = 8
SECONDS = 6.0


def _writer(index: int, barrier: Any, results: Any, database: str) -> None:
    try:
        connections["default"].settings_dict["NAME"] = database
        store.clear_caches()
        settings.ML_AUDIT = {**SEAL_SETTINGS, "WRITE_MODE": "batch"}
        audit_settings.reload()
        barrier.wait(timeout=30)
        written = 0
        deadline = time.monotonic() + SECONDS
        actor = ActorPayload("user", f"writer-{index}", tenant_id="acme")
        while time.monotonic() < deadline:
            if index % 2:  # batch: queued, written by the processor's worker in batches
                for _ in range(20):
                    with prediction_span(
                        model_name="race",
                        model_version="1",
                        features={"i": written},
                        actor=actor,
                        mode="batch",
                    ) as span:
                        span.set_output({"score": 0.5})
                    written += 1
            else:  # sync, with an explanation now and then, and an access-log row
                event = record_prediction_event(
                    "race", "1", {"i": written}, {"score": 0.5}, actor=actor
                )
                written += 1
                if written % 5 == 0:
                    attach_explanation(event, "shap", {"i": 0.1})
                    access_row(index)
        setup.get_pipeline().processor.force_flush()
        results.put(("ok", written))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        connections.close_all()


def _sealer(stop: Any, results: Any, database: str) -> None:
    try:
        connections["default"].settings_dict["NAME"] = database
        settings.ML_AUDIT = dict(SEAL_SETTINGS)  # SEAL_LAG_SECONDS = 0: the hardest case
        audit_settings.reload()
        seals = 0
        while not stop.is_set():
            if seal_pending(max_rows=500) is not None:
                seals += 1
            time.sleep(0.05)
        results.put(("sealer", seals))
    except BaseException as exc:
        results.put(("error", f"sealer {type(exc).__name__}: {exc}"))
    finally:
        connections.close_all()


def test_eight_writers_while_sealing_gives_no_false_alarm(transactional_db: None) -> None:
    ctx = multiprocessing.get_context("fork")
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT current_database()")
        database = cursor.fetchone()[0]
    connections.close_all()
    barrier = ctx.Barrier(WRITERS)
    results = ctx.Queue()
    stop = ctx.Event()
    sealer = ctx.Process(target=_sealer, args=(stop, results, database))
    sealer.start()
    writers = [
        ctx.Process(target=_writer, args=(i, barrier, results, database)) for i in range(WRITERS)
    ]
    for process in writers:
        process.start()
    outcomes = [results.get(timeout=90) for _ in writers]
    stop.set()
    outcomes.append(results.get(timeout=60))
    for process in [*writers, sealer]:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert all(kind != "error" for kind, _ in outcomes), outcomes
    written = sum(n for kind, n in outcomes if kind == "ok")
    cut_while_writing = next(n for kind, n in outcomes if kind == "sealer")
    try:
        settings.ML_AUDIT = dict(SEAL_SETTINGS)
        audit_settings.reload()
        assert cut_while_writing >= 3
        # Whatever committed after the sealer's last cut goes into one more seal.
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        while seal_pending(max_rows=100_000, now=later) is not None:
            pass
        assert PredictionEvent.objects.count() == written
        report = verify()
        assert report.findings == {}, report.lines()
        assert report.checked["prediction"] == written
        assert SealMember.objects.filter(kind=1).count() == written
        assert Seal.objects.count() > cut_while_writing
    finally:
        connections.close_all()
        settings.ML_AUDIT = {}
        audit_settings.reload()
