"""gunicorn workers killed while serving ``@audited_prediction(on_audit_failure="serve")``.

Two sync workers with ``--preload``: the usual production set-up (Django and the app are
imported once in the master and the workers forked from it), and the one where a killed
worker's replacement is serving within milliseconds, inside the test's window. The master
records nothing (ml_audit installs its processor at a worker's first prediction), so each
worker's processor, journal and spool are its own. A client posts predictions and keeps the
ids of the 200 responses (``X-Prediction-Id``); the worker that served the latest one is
killed with ``kill -9`` mid-stream (gunicorn starts a new one, whose writer replays the dead
worker's journal), the client goes on, gunicorn is stopped gracefully (SIGTERM to the master:
workers exit through ``atexit``), the next writer runs, and every acknowledged prediction must
be in the database. The same run with ``WRITE_MODE = "batch"`` is reported, not asserted.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.durability import harness
from tests.durability.harness import BATCH, JOURNAL, Mode

pytestmark = pytest.mark.postgres

SCENARIO = "gunicorn worker kill -9"


def _gunicorn_trial(
    database: harness.ScratchDatabase, workdir: Path, mode: Mode, trial: int, way: str
) -> harness.Trial:
    rng = harness.rng_for(SCENARIO, mode.label, trial)
    before = rng.uniform(0.5, 1.0) * harness.HTTP_SECONDS
    after = rng.uniform(0.5, 1.0) * harness.HTTP_SECONDS
    directory = workdir / f"{mode.label}-{trial}"
    directory.mkdir()
    spool = directory / "spool"
    log = directory / "gunicorn.log"
    env = harness.child_environment(database.url(), spool, write_mode=mode.write_mode)
    server = harness.Gunicorn(env, log, workers=2)
    client: harness.HttpClient | None = None
    try:
        port = server.wait_listening()
        server.wait_workers(2)
        client = harness.HttpClient(port, threads=2)
        client.start()
        time.sleep(before)
        victim = client.last_pid or server.workers()[0]
        acked_before = client.acknowledged()
        served_by_victim = client.served_by.get(victim, 0)
        os.kill(victim, signal.SIGKILL)
        server.wait_workers(2, exclude=victim)
        time.sleep(after)
        client.stop()
        status = server.stop()
    finally:
        if client is not None:
            client.stop()
        server.stop()
    acks = list(client.acks)
    assert len(set(acks)) == len(acks), "a prediction_id was acknowledged twice"
    after_kill = len(acks) - acked_before
    assert status == 0, f"gunicorn exited with {status}:\n{harness.tail(log, 40)}"
    assert served_by_victim > 0, "the killed worker had served nothing"
    assert after_kill > 0, f"nothing was served after the kill:\n{harness.tail(log, 40)}"
    at_stop = harness.spool_listing(spool)
    summary = harness.spool_summary(spool)
    report = harness.run_next_writer(way, env)
    missing = database.missing(acks)
    rows = harness.check_rows(env, harness.stored(acks, missing))
    result = harness.Trial(
        scenario=SCENARIO,
        mode=f"{mode.label} (serve)",
        next_writer=way,
        acknowledged=len(acks),
        missing=missing,
        description=(
            f"trial {trial}: worker {victim} killed after {before:.3f} s "
            f"({acked_before} acknowledged, {served_by_victim} by it), then {after:.3f} s more "
            f"({after_kill} acknowledged); {client.errors} failed requests, "
            f"{client.non_200} not 200; spool after the stop: {summary}"
        ),
        diagnosis=(
            f"spool at the stop: {at_stop}\nspool after the next writer: "
            f"{harness.spool_listing(spool)}\n{report.output}\nrow check: {rows.report}\n"
            f"gunicorn log:\n{harness.tail(log)}"
        ),
        replay_issues=report.issues,
        bad_rows=rows.bad,
    )
    harness.TRIALS_RUN.append(result)
    return result


def test_gunicorn_worker_killed_loses_nothing_acknowledged(
    durability_db: harness.ScratchDatabase, tmp_path: Path
) -> None:
    trials = [
        _gunicorn_trial(
            durability_db,
            tmp_path,
            JOURNAL,
            trial,
            harness.NEXT_WRITERS[trial % len(harness.NEXT_WRITERS)],
        )
        for trial in range(harness.SIGNAL_TRIALS)
    ]
    harness.assert_no_losses(trials)


def test_gunicorn_worker_killed_in_batch_mode_is_reported(
    durability_db: harness.ScratchDatabase, tmp_path: Path
) -> None:
    """``WRITE_MODE = "batch"``: the killed worker's queue is lost (reported, not asserted)."""
    trial = _gunicorn_trial(durability_db, tmp_path, BATCH, 0, "writer")
    assert trial.acknowledged > 0
