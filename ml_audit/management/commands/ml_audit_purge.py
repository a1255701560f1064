"""``manage.py ml_audit_purge``: remove what is past retention and under no legal hold.

Dry run by default: prints what would go, per model and tenant (and the access log), and what
is held. ``--execute`` deletes it in batches (``--batch-size``, default
``ML_AUDIT['PURGE_BATCH_SIZE']``), each its own short transaction through the purge hatch,
leaving one purge record per batch. On PostgreSQL run it as (a member of) the purge role.
A progress bar is drawn on stderr when stdout is a terminal.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import ConfigurationError
from ml_audit.retention.purge import plan_purge, run_purge
from ml_audit.sealing.progress import ProgressBar


class Command(BaseCommand):
    help = "Purge audit rows past retention and under no legal hold (dry run unless --execute)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--execute", action="store_true", help="Delete (default: dry run).")
        parser.add_argument("--database", default=None, help="Alias (default: ML_AUDIT's).")
        parser.add_argument("--batch-size", type=int, default=None, help="Rows per transaction.")
        parser.add_argument(
            "--by", default=None, help="Who runs it, for the record (default: user@host)."
        )
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = resolve_alias(options["database"])
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be >= 1")
        ran_by = options["by"] or f"{getpass.getuser()}@{socket.gethostname()}"
        try:
            groups = plan_purge(alias)
            bar = None
            total = sum(group.count for group in groups)
            if options["execute"] and total and self.stdout.isatty():
                bar = ProgressBar(sys.stderr, total=total, label="purging")
            try:
                result = run_purge(
                    alias,
                    ran_by=ran_by,
                    execute=options["execute"],
                    batch_size=options["batch_size"],
                    progress=bar.advance if bar is not None else None,
                    groups=groups,
                )
            finally:
                if bar is not None:
                    bar.close()
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "executed": result.executed,
                        "run_id": str(result.run_id) if result.executed else None,
                        "groups": [group.as_json() for group in result.groups],
                        "removed": result.counts,
                        "records": [str(record.pk) for record in result.records],
                    },
                    indent=2,
                )
            )
            return
        verb = "removed" if result.executed else "would remove"
        if not result.groups:
            self.stdout.write("Nothing is past retention.")
        for group in result.groups:
            what = (
                "access log"
                if group.target == "access"
                else f"model {group.model_name!r} tenant {group.tenant_id!r}"
            )
            held = f", {group.held} held" if group.held else ""
            self.stdout.write(
                f"{what}: {group.count} rows before {group.cutoff:%Y-%m-%d %H:%M} "
                f"({group.rule.source} = {group.rule.days} days){held}"
            )
        if result.executed:
            counts = ", ".join(f"{n} {name}" for name, n in sorted(result.counts.items()))
            self.stdout.write(
                f"Purge {result.run_id}: {verb} {counts or 'nothing'} in "
                f"{len(result.records)} batches."
            )
        else:
            total = sum(group.count for group in result.groups)
            self.stdout.write(
                f"Dry run: {verb} {total} rows (plus their explanations). "
                "Run with --execute to delete."
            )
