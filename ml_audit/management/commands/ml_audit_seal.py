"""``manage.py ml_audit_seal``: seal every stored row that no seal holds yet and that is older
than ``ML_AUDIT['SEAL_LAG_SECONDS']``, and print what was sealed.

``--export FILE`` then writes the newest seal head (id, root, previous hash, counts, times, key
id, HMAC) as a small JSON document to keep outside the database; ``ml_audit_verify --against
FILE`` later proves the chain still holds that head unchanged. Needs ``ML_AUDIT['SEAL_KEY']``.
See docs/tamper-evidence.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import ConfigurationError
from ml_audit.seal_models import Seal
from ml_audit.sealing.heads import export_document
from ml_audit.sealing.sealer import seal_all


class Command(BaseCommand):
    help = "Seal the audit rows that no seal holds yet; optionally export the newest seal head."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=None, help="Audit alias (default: ML_AUDIT's).")
        parser.add_argument(
            "--max-rows", type=int, default=None, help="Rows per seal (default SEAL_MAX_ROWS)."
        )
        parser.add_argument(
            "--export",
            type=Path,
            default=None,
            metavar="FILE",
            help="Write the newest seal head to FILE as JSON (for storage outside the database).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = resolve_alias(options["database"])
        if options["max_rows"] is not None and options["max_rows"] < 1:
            raise CommandError("--max-rows must be at least 1")
        try:
            seals = seal_all(alias, max_rows=options["max_rows"])
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        for seal in seals:
            counts = ", ".join(f"{n} {name}" for name, n in seal.counts.items() if n)
            self.stdout.write(
                f"sealed seal {seal.id}: {seal.leaves} rows ({counts}), root {seal.root}"
            )
        if not seals:
            self.stdout.write("nothing to seal")
        if options["export"] is not None:
            latest = Seal.objects.using(alias).order_by("-id").first()
            if latest is None:
                raise CommandError("there is no seal to export yet")
            document = export_document(latest)
            options["export"].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            self.stdout.write(f"exported the head of seal {latest.id} to {options['export']}")
