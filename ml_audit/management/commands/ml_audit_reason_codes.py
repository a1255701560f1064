"""``manage.py ml_audit_reason_codes --backfill``: reason codes for explanation revisions stored
before ``ML_AUDIT["REASON_CODES"]`` was configured, or whose codes could not be stored when they
were written (:func:`ml_audit.reasons.writer.backfill`).

    ml_audit_reason_codes --backfill [--dry-run] [--batch-size N] [--database ALIAS]

Derived under the policy configured now; a revision that has reason codes keeps them (rows are
append-only). Running it twice adds nothing the second time.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.exceptions import ConfigurationError
from ml_audit.reasons.writer import backfill


class Command(BaseCommand):
    help = "Store the reason codes of explanation revisions that have none (REASON_CODES)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--backfill",
            action="store_true",
            help="Derive and store the missing reason codes (the only action).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count, write nothing.")
        parser.add_argument("--batch-size", type=int, default=500, help="Revisions per batch.")
        parser.add_argument("--database", default=None, help="Alias (default: ML_AUDIT's).")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["backfill"]:
            raise CommandError("Nothing to do: pass --backfill (with --dry-run to count only).")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            enabled = audit_settings.REASON_CODES.enabled
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        if not enabled:
            raise CommandError(
                'ML_AUDIT["REASON_CODES"] is not configured: there are no reason codes to '
                "derive (see docs/reason-codes.md)."
            )
        result = backfill(
            using=resolve_alias(options["database"]),
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
        )
        verb = "would store" if options["dry_run"] else "stored"
        self.stdout.write(
            f"{result.examined} explanation revision(s) without reason codes examined; "
            f"{verb} {result.written}; {result.not_covered} of a model REASON_CODES does not "
            "cover."
        )
