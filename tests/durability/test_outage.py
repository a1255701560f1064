"""PostgreSQL goes away while a child records (its writes fail, are retried, spooled), then the
child is killed with ``kill -9``; the next writer (pointed straight at the server) must leave
nothing acknowledged missing.

The child reaches PostgreSQL through :class:`harness.TcpProxy`; cutting the proxy closes its
listener (new connections are refused) and breaks every open connection mid-stream.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.durability import harness
from tests.durability.harness import JOURNAL, Mode

pytestmark = pytest.mark.postgres

SCENARIO = "outage, then kill -9"
#: The child sleeps this long after each prediction, so that an outage of a few seconds
#: stays within a few thousand predictions.
PAUSE_MS = 1.0


def _outage_trial(
    database: harness.ScratchDatabase, workdir: Path, mode: Mode, trial: int, way: str
) -> harness.Trial:
    rng = harness.rng_for(SCENARIO, mode.label, trial)
    before = rng.uniform(0.2, 1.0)
    outage = rng.uniform(1.0, 2.5)
    directory = workdir / f"{mode.label}-{trial}"
    directory.mkdir()
    spool = directory / "spool"
    log = directory / "recorder.log"
    proxy = harness.TcpProxy((database.host, database.port))
    try:
        env = harness.child_environment(
            database.url(port=proxy.port), spool, write_mode=mode.write_mode, fsync=mode.fsync
        )
        args = ["--mode", mode.span_mode, "--pause-ms", str(PAUSE_MS)]
        with harness.Recorder(env, args, log) as recorder:
            recorder.wait_for_kill_point(before, 10**9)
            proxy.cut()
            acked_at_cut = recorder.acknowledged()
            time.sleep(outage)
            recorder.kill(signal.SIGKILL)
            status = recorder.finish()
    finally:
        proxy.close()
    acks = harness.check_acks(recorder)
    during = len(acks) - acked_at_cut
    at_kill = harness.spool_listing(spool)
    summary = harness.spool_summary(spool)
    assert status == -signal.SIGKILL, f"exit {status}:\n{harness.tail(log, 40)}"
    assert proxy.connections > 0, "the child never connected through the proxy"
    assert during > 0, f"the child acknowledged nothing during the outage:\n{harness.tail(log)}"
    direct_env = harness.child_environment(
        database.url(), spool, write_mode=mode.write_mode, fsync=mode.fsync
    )
    report = harness.run_next_writer(way, direct_env)
    missing = database.missing(acks)
    rows = harness.check_rows(direct_env, harness.stored(acks, missing))
    result = harness.Trial(
        scenario=SCENARIO,
        mode=mode.label,
        next_writer=way,
        acknowledged=len(acks),
        missing=missing,
        description=(
            f"trial {trial}: proxy cut after {before:.3f} s ({acked_at_cut} acknowledged), "
            f"kill -9 after {outage:.3f} s of outage ({during} acknowledged during it), "
            f"spool then: {summary}; "
            f"{sum(1 for pid in missing if pid in acks[acked_at_cut:])} of the missing "
            "acknowledged during the outage"
        ),
        diagnosis=(
            f"spool at the kill: {at_kill}\nspool after the next writer: "
            f"{harness.spool_listing(spool)}\n{report.output}\nrow check: {rows.report}\n"
            f"recorder log:\n{harness.tail(log)}"
        ),
        replay_issues=report.issues,
        bad_rows=rows.bad,
    )
    harness.TRIALS_RUN.append(result)
    return result


def test_outage_then_kill_9_loses_nothing_acknowledged(
    durability_db: harness.ScratchDatabase, tmp_path: Path
) -> None:
    trials = [
        _outage_trial(
            durability_db,
            tmp_path,
            JOURNAL,
            trial,
            harness.NEXT_WRITERS[trial % len(harness.NEXT_WRITERS)],
        )
        for trial in range(harness.SIGNAL_TRIALS)
    ]
    harness.assert_no_losses(trials)
