"""``manage.py ml_audit_forget``: forget a data subject (:mod:`ml_audit.subjects.forget`).

    ml_audit_forget --subject customer-1841 [--tenant acme] --reason "Art. 17 request" \\
        [--reference TICKET-7] [--by alice] [--database ALIAS] [--json]
    echo customer-1841 | ml_audit_forget --subject - --reason ...   (kept out of shell history)

Deletes the subject's key and appends one erasure record, in one transaction; the predictions
stay (their hashes and seals too) but no longer link to the person. Exits non-zero, writing
nothing, when the subject has no key (never named, or forgotten already) or a legal hold
covers its predictions. On PostgreSQL run it as (a member of) the purge role.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import ConfigurationError, InvalidRecord
from ml_audit.subjects.errors import SubjectHeld, UnknownSubject
from ml_audit.subjects.forget import forget_subject


class Command(BaseCommand):
    help = "Forget a data subject: delete its key (crypto-shredding) and record the erasure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--subject",
            required=True,
            help="The subject's identifier, as predictions named it; '-' reads it from stdin.",
        )
        parser.add_argument("--tenant", default="", help="The subject's tenant (default: none).")
        parser.add_argument("--reason", required=True, help="Why (required).")
        parser.add_argument("--reference", default="", help="Request, case or ticket number.")
        parser.add_argument("--by", default=None, help="Who, for the record (default: user@host).")
        parser.add_argument("--database", default=None, help="Alias (default: ML_AUDIT's).")
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        identifier = options["subject"]
        if identifier == "-":
            identifier = sys.stdin.readline().rstrip("\r\n")
        erased_by = options["by"] or f"{getpass.getuser()}@{socket.gethostname()}"
        alias = resolve_alias(options["database"])
        try:
            erasure = forget_subject(
                identifier,
                tenant=options["tenant"],
                reason=options["reason"],
                erased_by=erased_by,
                reference=options["reference"],
                using=alias,
            )
        except (UnknownSubject, SubjectHeld, InvalidRecord, ConfigurationError) as exc:
            raise CommandError(f"nothing was forgotten: {exc}") from exc
        except DatabaseError as exc:
            raise CommandError(
                f"nothing was forgotten: the database refused ({exc}). On PostgreSQL run "
                "ml_audit_forget as a member of the purge role (ML_AUDIT['PURGE_ROLE'])."
            ) from exc
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "erasure": str(erasure.pk),
                        "subject_ref": erasure.subject_ref,
                        "tenant": erasure.tenant_id,
                        "predictions": erasure.predictions,
                        "erased_at": erasure.erased_at.isoformat(),
                        "erased_by": erasure.erased_by,
                        "reference": erasure.reference,
                    },
                    indent=2,
                )
            )
            return
        tenant = f" in tenant {erasure.tenant_id!r}" if erasure.tenant_id else ""
        count = erasure.predictions
        self.stdout.write(
            f"Forgot subject {erasure.subject_ref[:16]}…{tenant}: its key is deleted. "
            f"{count} stored prediction{'' if count == 1 else 's'} named it; "
            f"{'it stays' if count == 1 else 'they stay'} as recorded (hashes and seals "
            "intact) and no longer link to the person."
        )
        self.stdout.write(f"Erasure record {erasure.pk} (by {erasure.erased_by}).")
