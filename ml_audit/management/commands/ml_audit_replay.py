"""``manage.py ml_audit_replay``: write spooled prediction records (and explanations) into the
database.

The batch writer replays its spool by itself once the database is back; this command is for
what is left over, e.g. after the process that spooled was stopped, or to recover files of a
process that crashed (``--include-active``). See :mod:`ml_audit.otel.spool` for the files.

Records go to the alias they were spooled for, or the audit alias; ``--database`` sends every
record to that alias instead. Exits with status 1 when anything could not be replayed
(a failed write, a conflicting record, an unreadable line), after replaying everything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_audit import store
from ml_audit.conf import audit_settings
from ml_audit.otel.spool import DEFAULT_REPLAY_BATCH_SIZE, Spool, SpooledExplanation
from ml_audit.otel.writes import is_connection_error, run_untraced
from ml_audit.records import PredictionRecord


class Command(BaseCommand):
    help = (
        "Replay the ml_audit spool: write every ready spool file (and, with --include-active, "
        "files left by crashed processes) into the audit database. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--spool-dir",
            type=Path,
            default=None,
            help="Spool directory (default: ML_AUDIT['SPOOL_DIR']).",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="Write every record to this alias (default: the alias each record was "
            "spooled for, else ML_AUDIT['DATABASE_ALIAS']).",
        )
        parser.add_argument(
            "--include-active",
            action="store_true",
            help="Also replay active files whose process is gone (its pid does not exist and "
            "nobody holds the file's lock).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_REPLAY_BATCH_SIZE,
            help=f"Records per INSERT (default {DEFAULT_REPLAY_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        directory: Path = options["spool_dir"] or audit_settings.SPOOL_DIR
        forced: str | None = options["database"]
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be a positive integer.")
        spool = Spool(directory)

        def write(records: list[PredictionRecord], using: str | None) -> store.WriteResult:
            return run_untraced(store.write_many, records, using=forced or using)

        def write_explanation(entry: SpooledExplanation, using: str | None) -> bool:
            return run_untraced(
                store.append_explanation_of,
                entry.prediction_id,
                entry.record,
                using=forced or using,
            )

        try:
            result = spool.replay(
                write,
                batch_size=options["batch_size"],
                include_active=options["include_active"],
                is_transient=is_connection_error,
                write_explanation=write_explanation,
            )
        finally:
            spool.close()  # records kept back by this replay become a ready file again
        self.stdout.write(
            f"{directory}: {result.files} file(s) replayed, {result.replayed} record(s) in "
            f"the database ({result.inserted} inserted, {result.duplicates} already stored), "
            f"{result.conflicts} conflict(s), {result.corrupt} unreadable line(s) moved aside, "
            f"{result.failed} record(s) left in the spool, {result.skipped} file(s) in use "
            "skipped."
        )
        if not result.ok:
            raise CommandError(
                "Some spooled records were not replayed; see the log above. Records left in "
                "the spool are replayed by the next run; conflicting records are not.",
                returncode=1,
            )
