"""``manage.py ml_audit_subject_report``: everything about one data subject, as JSON or as a
printable HTML page (:mod:`ml_audit.reports.subject`).

    ml_audit_subject_report --subject ID [--tenant T] [--format json|html] [--output FILE]
    ml_audit_subject_report --ref REF [--format json|html] [--output FILE]

``--subject`` is the subject's identifier (as given to ``record_prediction_event(subject=...)``)
in tenant ``--tenant``; its reference is computed from the subject's key, and no key is ever
created: an identifier the trail does not know, or a forgotten subject (``ml_audit_forget``),
is an error (exit status 1), as is a reference without decisions. ``--ref`` takes the
pseudonymous reference itself (64 hex digits, as the API and ``subject_ref`` show it).

Every decision is included (the API's ``API_MAX_PAGE_SIZE`` bound does not apply). The read
is recorded in the access log (``endpoint`` ``command-subject-report``, the OS user as
``username``, the predictions in the report as ``returned_ids``), unless
``ML_AUDIT['API_ACCESS_LOG']`` is False.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.exceptions import ConfigurationError, InvalidRecord
from ml_audit.models import AccessLog
from ml_audit.reports.subject import (
    SubjectForgotten,
    SubjectNotFound,
    is_subject_ref,
    render_html,
    subject_report,
)

ENDPOINT = "command-subject-report"


def subject_ref_of(identifier: str, tenant: str, using: str) -> str | None:
    """The reference of the subject ``identifier`` in ``tenant``, from its key; ``None`` when
    no key exists (unknown, or forgotten). Never creates a key."""
    from ml_audit.subjects import SubjectUnavailable, subject_ref

    try:
        return subject_ref(identifier, tenant=tenant, create=False, using=using)
    except (InvalidRecord, ConfigurationError, SubjectUnavailable) as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = "Every decision about one data subject, and why: JSON or a printable HTML page."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--subject", help="The subject's identifier (never stored).")
        who.add_argument("--ref", help="The subject's pseudonymous reference (64 hex digits).")
        parser.add_argument("--tenant", default="", help="The subject's tenant (with --subject).")
        parser.add_argument("--format", choices=("json", "html"), default="json")
        parser.add_argument("--output", default=None, help="Write to FILE (default: stdout).")
        parser.add_argument("--database", default=None, help="Alias (default: ML_AUDIT's).")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = resolve_alias(options["database"])
        tenant: str = options["tenant"]
        if options["ref"] is not None:
            ref = options["ref"].strip().lower()
            if not is_subject_ref(ref):
                raise CommandError(
                    f"--ref must be a subject reference (64 hex digits), not {options['ref']!r}."
                )
            if tenant:
                raise CommandError("--tenant goes with --subject; a reference names its tenant.")
        else:
            identifier = options["subject"]
            if not identifier:
                raise CommandError("--subject needs the subject's identifier.")
            found = subject_ref_of(identifier, tenant, alias)
            if found is None:
                where = f" in tenant {tenant!r}" if tenant else " (without a tenant)"
                raise CommandError(
                    f"No subject with this identifier{where} is known: it never had a decision "
                    "recorded, or it was forgotten (ml_audit_forget). Check the identifier and "
                    "--tenant."
                )
            ref = found
        try:
            report = subject_report(ref, using=alias)
        except SubjectForgotten as exc:
            raise CommandError(str(exc)) from None
        except SubjectNotFound:
            raise CommandError(
                f"No decision about the subject {ref} is stored (on database {alias!r})."
            ) from None
        if audit_settings.API_ACCESS_LOG:
            _record_access(report, options, alias)
        if options["format"] == "html":
            text = render_html(report)
        else:
            text = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
        if options["output"]:
            path = Path(options["output"])
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"cannot write {path}: {exc}") from exc
            self.stderr.write(
                f"{report['decision_count']} decision(s) about subject {ref[:12]}… written to "
                f"{path}"
            )
        else:
            self.stdout.write(text, ending="")


def _record_access(report: dict[str, Any], options: dict[str, Any], alias: str) -> None:
    """The access-log row of this read (the "audit of the audit"), as an API read has one."""
    query = {"format": [options["format"]]}
    if options["tenant"]:
        query["tenant"] = [options["tenant"]]
    ids = [decision["id"] for decision in report["decisions"]]
    AccessLog(
        accessed_at=timezone.now(),
        username=getpass.getuser()[:150],
        endpoint=ENDPOINT,
        method="COMMAND",
        # Never the identifier: the reference only.
        path=f"manage.py ml_audit_subject_report --ref {report['subject_ref']}",
        query=query,
        status_code=200,
        returned_ids=ids,
        result_count=len(ids),
    ).save(using=alias)
