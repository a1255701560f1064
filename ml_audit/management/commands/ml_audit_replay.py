"""``manage.py ml_audit_replay``: write spooled prediction records (and explanations) into the
database.

The batch writer replays its spool by itself once the database is back; this command is for
what is left over, e.g. after the process that spooled was stopped, or the active spool files
and journal segments of a process that died (any file whose lock nobody holds; a live
process's files are never touched). See :mod:`ml_audit.otel.spool` for the files.

Every line is validated and redacted again before it is written; lines that cannot be read
back, and entries that are not regular files of this user, are moved to ``.corrupt`` files.
The copy a dead process was still making into a mapped journal segment (its record never
acknowledged) is logged and dropped.
A spool directory that other users may write to is refused (``ml_audit.E004``).

Records go to the alias they were spooled for, or the audit alias; ``--database`` sends every
record to that alias instead. Exits with status 1 when anything could not be replayed
(a failed write, a conflicting record, an unreadable line), after replaying everything else.
``--include-active`` is accepted for compatibility; it is no longer needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_audit import store
from ml_audit.conf import audit_settings
from ml_audit.otel.spool import (
    DEFAULT_REPLAY_BATCH_SIZE,
    InsecureSpoolDirectory,
    Spool,
    SpooledExplanation,
)
from ml_audit.otel.writes import is_connection_error, run_untraced
from ml_audit.records import PredictionRecord


class Command(BaseCommand):
    help = (
        "Replay the ml_audit spool: write every ready spool file, and the spool and journal "
        "files left by processes that died, into the audit database. Idempotent."
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
            help="Accepted for compatibility; no longer needed: active and journal files whose "
            "lock nobody holds (their process died) are always replayed.",
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
        except InsecureSpoolDirectory as exc:
            raise CommandError(str(exc)) from None
        finally:
            spool.close()  # records kept back by this replay become a ready file again
        self.stdout.write(
            f"{directory}: {result.files} file(s) replayed, {result.replayed} record(s) in "
            f"the database ({result.inserted} inserted, {result.duplicates} already stored), "
            f"{result.conflicts} conflict(s), {result.corrupt} unreadable line(s) or file(s) "
            f"moved aside, {result.unfinished} unfinished journal line(s) of a dead process "
            f"dropped (never acknowledged), {result.failed} record(s) left in the spool, "
            f"{result.skipped} file(s) in use skipped."
        )
        if not result.ok:
            raise CommandError(
                "Some spooled records were not replayed; see the log above. Records left in "
                "the spool are replayed by the next run; conflicting records are not.",
                returncode=1,
            )
