"""The fault tests' child process: ``python -m tests.durability.recorder <command>``.

``record --mode MODE [--sigterm exit] [--pause-ms N] [--max-seconds S]``
    Records predictions with :class:`ml_audit.otel.spans.prediction_span` in a loop, in the
    given mode, until killed (or ``--max-seconds``, a safety net). After each ``with`` block
    returns it writes the prediction_id and a newline to stdout and flushes: that line is the
    acknowledgement. ``--sigterm exit`` installs a SIGTERM handler that calls ``sys.exit(0)``
    (so ``atexit`` runs the processor's shutdown); without it SIGTERM keeps its default action.

``next-writer``
    The next writer that starts after a crash: records one prediction in the configured mode,
    so the processor starts its writer thread (which replays what dead writers left), waits
    for it with ``force_flush`` and shuts the processor down. Prints its stats as JSON.

``check``
    Reads prediction_ids (one a line) from stdin and checks their rows: the content hash
    verifies (``store.verify_event``), the latency is set, the e-mail feature is redacted and
    the status is ``success``, whether the row was written live or replayed. Prints JSON.

Settings: ``tests.durability.child_settings`` (from the environment, see there).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

MODEL_NAME = "durability"
#: A feature the default redaction policy masks (its value detector finds an e-mail address).
EMAIL = "jane.doe@example.com"


def _record_loop(mode: str, pause: float, max_seconds: float) -> None:
    from ml_audit.otel.spans import prediction_span

    out = sys.stdout
    deadline = time.monotonic() + max_seconds
    i = 0
    while time.monotonic() < deadline:
        with prediction_span(
            model_name=MODEL_NAME,
            model_version="1",
            features={"i": i, "amount": 12.5, "country": "NL", "email": EMAIL},
            metadata={"pid": os.getpid()},
            mode=mode,
        ) as p:
            p.set_output({"score": 0.25}, confidence=0.25, decision_outcome="clear")
        out.write(p.prediction_id + "\n")
        out.flush()
        i += 1
        if pause:
            time.sleep(pause)


def _next_writer() -> None:
    from ml_audit.otel.setup import get_pipeline
    from ml_audit.otel.spans import prediction_span

    with prediction_span(
        model_name=MODEL_NAME, model_version="1", features={"next_writer": True}
    ) as p:
        p.set_output({"score": 0.0}, confidence=0.0, decision_outcome="clear")
    processor = get_pipeline().processor
    flushed = processor.force_flush(120_000)
    processor.shutdown()
    print(json.dumps({"flushed": flushed, "stats": processor.stats()}), flush=True)


def _check(prediction_ids: list[str]) -> None:
    from ml_audit.models import PredictionEvent
    from ml_audit.store import verify_event

    bad: dict[str, list[str]] = {}
    checked = 0
    for start in range(0, len(prediction_ids), 1000):
        chunk = prediction_ids[start : start + 1000]
        events = PredictionEvent.objects.filter(prediction_id__in=chunk).select_related(
            "model", "actor"
        )
        for event in events:
            checked += 1
            problems = []
            if not verify_event(event):
                problems.append("content hash does not verify")
            if event.latency_ms is None:
                problems.append("no latency")
            if "@" in json.dumps(event.features):
                problems.append("e-mail feature not redacted")
            if event.status != "success":
                problems.append(f"status {event.status}")
            if problems:
                bad[event.prediction_id] = problems
    examples = dict(list(bad.items())[:5])
    print(json.dumps({"checked": checked, "bad": len(bad), "examples": examples}), flush=True)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="recorder")
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record")
    record.add_argument("--mode", required=True, choices=["journal", "batch", "sync"])
    record.add_argument("--sigterm", choices=["default", "exit"], default="default")
    record.add_argument("--pause-ms", type=float, default=0.0)
    record.add_argument("--max-seconds", type=float, default=120.0)
    commands.add_parser("next-writer")
    commands.add_parser("check")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.durability.child_settings")
    import django

    django.setup()
    if args.command == "record":
        if args.sigterm == "exit":
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        _record_loop(args.mode, args.pause_ms / 1e3, args.max_seconds)
    elif args.command == "check":
        _check(sys.stdin.read().split())
    else:
        _next_writer()


if __name__ == "__main__":
    main()
