"""SIGTERM while a child records: with its default action (the process dies at once, no
``atexit``) and with a handler that calls ``sys.exit`` (``atexit`` runs the processor's
shutdown, which drains the queue)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.durability import harness
from tests.durability.harness import BATCH, JOURNAL, Mode

pytestmark = pytest.mark.postgres

SCENARIO = "SIGTERM"


def _trials(
    database: harness.ScratchDatabase, tmp_path: Path, mode: Mode, sigterm: str
) -> list[harness.Trial]:
    return [
        harness.signal_trial(
            database,
            tmp_path,
            scenario=f"{SCENARIO} ({'handler: sys.exit' if sigterm == 'exit' else 'no handler'})",
            mode=mode,
            trial=trial,
            way=harness.NEXT_WRITERS[trial % len(harness.NEXT_WRITERS)],
            signum=signal.SIGTERM,
            sigterm=sigterm,
            expected_status=0 if sigterm == "exit" else -signal.SIGTERM,
        )
        for trial in range(harness.SIGNAL_TRIALS)
    ]


@pytest.mark.parametrize(
    ("mode", "sigterm"),
    [(JOURNAL, "default"), (JOURNAL, "exit"), (BATCH, "exit")],
    ids=["journal-no-handler", "journal-handler", "batch-handler"],
)
def test_sigterm_loses_nothing_acknowledged(
    durability_db: harness.ScratchDatabase, tmp_path: Path, mode: Mode, sigterm: str
) -> None:
    harness.assert_no_losses(_trials(durability_db, tmp_path, mode, sigterm))


def test_sigterm_without_handler_in_batch_mode_is_reported(
    durability_db: harness.ScratchDatabase, tmp_path: Path
) -> None:
    """Like ``kill -9`` for batch mode (no ``atexit``): reported, not asserted."""
    trials = _trials(durability_db, tmp_path, BATCH, "default")
    assert all(trial.acknowledged > 0 for trial in trials)
