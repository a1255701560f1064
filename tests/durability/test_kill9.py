"""``kill -9`` at random points while a child records predictions, then the next writer.

Journal (with and without ``JOURNAL_FSYNC``) and sync modes must lose nothing acknowledged;
the old batch mode's losses are reported in the table (it is documented to lose what is
queued when the process dies).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.durability import harness
from tests.durability.harness import BATCH, JOURNAL, JOURNAL_FSYNC, SYNC, Mode

pytestmark = pytest.mark.postgres

SCENARIO = "kill -9"


def _trials(database: harness.ScratchDatabase, tmp_path: Path, mode: Mode) -> list[harness.Trial]:
    return [
        harness.signal_trial(
            database,
            tmp_path,
            scenario=SCENARIO,
            mode=mode,
            trial=trial,
            way=harness.NEXT_WRITERS[trial % len(harness.NEXT_WRITERS)],
            signum=signal.SIGKILL,
            expected_status=-signal.SIGKILL,
        )
        for trial in range(harness.TRIALS)
    ]


@pytest.mark.parametrize("mode", [JOURNAL, JOURNAL_FSYNC, SYNC], ids=lambda m: m.label)
def test_kill_9_loses_nothing_acknowledged(
    durability_db: harness.ScratchDatabase, tmp_path: Path, mode: Mode
) -> None:
    harness.assert_no_losses(_trials(durability_db, tmp_path, mode))


def test_kill_9_in_batch_mode_is_reported(
    durability_db: harness.ScratchDatabase, tmp_path: Path
) -> None:
    """Batch mode keeps queued records in memory only: its losses go to the table. What is
    asserted is only that the trials ran (something was acknowledged each time)."""
    trials = _trials(durability_db, tmp_path, BATCH)
    assert all(trial.acknowledged > 0 for trial in trials)


def _double_crash_trial(
    database: harness.ScratchDatabase, workdir: Path, trial: int
) -> harness.Trial:
    """kill -9 the recorder, then kill -9 the first next writer at a random point of its
    replay; a second next writer (the other way) must leave nothing acknowledged missing."""
    scenario = "kill -9, next writer kill -9"
    rng = harness.rng_for(scenario, trial)
    delay = rng.uniform(0.0, 2 * harness.MAX_DELAY)
    cap = rng.randint(harness.MAX_ACKS // 2, 2 * harness.MAX_ACKS)
    replay_kill = rng.uniform(0.3, 1.0)
    first, second = harness.NEXT_WRITERS[trial % 2], harness.NEXT_WRITERS[(trial + 1) % 2]
    directory = workdir / f"double-{trial}"
    directory.mkdir()
    spool = directory / "spool"
    env = harness.child_environment(database.url(), spool)
    log = directory / "recorder.log"
    with harness.Recorder(env, ["--mode", "journal"], log) as recorder:
        reason = recorder.wait_for_kill_point(delay, cap)
        recorder.kill(signal.SIGKILL)
        status = recorder.finish()
    acks = harness.check_acks(recorder)
    assert status == -signal.SIGKILL, f"exit {status}:\n{harness.tail(log, 40)}"
    at_kill = harness.spool_listing(spool)
    summary = harness.spool_summary(spool)
    killed = harness.kill_next_writer(first, env, replay_kill, directory / "first-writer.log")
    after_first = harness.spool_listing(spool)
    missing_after_first = len(database.missing(acks))
    report = harness.run_next_writer(second, env)
    missing = database.missing(acks)
    rows = harness.check_rows(env, harness.stored(acks, missing))
    result = harness.Trial(
        scenario=scenario,
        mode="journal",
        next_writer=f"{first} (killed), {second}",
        acknowledged=len(acks),
        missing=missing,
        description=(
            f"trial {trial}: recorder SIGKILL at the {reason} (delay {delay:.3f} s, cap {cap}; "
            f"spool then: {summary}); "
            f"first next writer ({first}) {killed}, {missing_after_first} missing then"
        ),
        diagnosis=(
            f"spool at the kill: {at_kill}\nspool after the killed next writer: {after_first}\n"
            f"spool after the second: {harness.spool_listing(spool)}\n{report.output}\n"
            f"row check: {rows.report}\n"
            f"first next writer's log:\n{harness.tail(directory / 'first-writer.log')}"
        ),
        replay_issues=report.issues,
        bad_rows=rows.bad,
    )
    harness.TRIALS_RUN.append(result)
    return result


def test_next_writer_killed_during_its_replay_loses_nothing_acknowledged(
    durability_db: harness.ScratchDatabase, tmp_path: Path
) -> None:
    trials = [
        _double_crash_trial(durability_db, tmp_path, trial)
        for trial in range(harness.SIGNAL_TRIALS)
    ]
    harness.assert_no_losses(trials)
