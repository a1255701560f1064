"""``manage.py ml_audit_ingest_token``: the tokens of the OTLP ingest endpoint.

::

    manage.py ml_audit_ingest_token create fraud-scorer --tenant acme --tenant globex
    manage.py ml_audit_ingest_token create batch-job --allow-no-tenant
    manage.py ml_audit_ingest_token list [--service fraud-scorer] [--all]
    manage.py ml_audit_ingest_token revoke 3            # by id, or by the token's prefix

``create`` prints the token once, on its own line (it is stored as a hash only: keep it now,
e.g. in the sender's secret store). The service becomes the actor of what the token sends;
``--tenant`` (repeatable) names the tenants it may write, ``--allow-no-tenant`` allows
predictions without a tenant. ``list`` shows the active credentials (``--all``: revoked ones
too). ``revoke`` ends a credential at once; to rotate, create a new one, switch the sender,
then revoke the old one.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import InvalidRecord
from ml_audit.ingest.auth import SHOWN, TOKEN_PREFIX, hash_token, issue, revoke
from ml_audit.models import IngestCredential


class Command(BaseCommand):
    help = "Create, list or revoke the per-service tokens of the ml_audit OTLP ingest endpoint."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database", default=None, help="Database alias (default: the audit alias)."
        )
        actions = parser.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
        create = actions.add_parser("create", help="Issue a token for a service.")
        create.add_argument("service", help="Service name: the actor of what it sends.")
        create.add_argument(
            "--tenant",
            action="append",
            default=[],
            help="A tenant id the service may write (repeat for several).",
        )
        create.add_argument(
            "--allow-no-tenant",
            action="store_true",
            help="Also accept predictions that name no tenant.",
        )
        create.add_argument("--description", default="", help="A note for the admin.")
        listing = actions.add_parser("list", help="List credentials.")
        listing.add_argument("--service", default=None, help="Only this service's.")
        listing.add_argument("--all", action="store_true", help="Include revoked ones.")
        revoking = actions.add_parser("revoke", help="Revoke a credential.")
        revoking.add_argument("credential", help="Its id (see list) or its token prefix.")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = resolve_alias(options["database"])
        action = options["action"]
        if action == "create":
            self._create(alias, options)
        elif action == "list":
            self._list(alias, options)
        else:
            self._revoke(alias, options["credential"])

    def _create(self, alias: str, options: dict[str, Any]) -> None:
        tenants = [t for t in options["tenant"] if t]
        if options["allow_no_tenant"]:
            tenants.append("")
        if not tenants:
            raise CommandError(
                "name the tenants the service may write (--tenant, repeatable) and/or "
                "--allow-no-tenant"
            )
        try:
            credential, token = issue(
                options["service"], tenants, description=options["description"], using=alias
            )
        except InvalidRecord as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"Created ingest credential {credential.pk} for service {credential.service_name!r} "
            f"(tenants: {_tenants(credential.allowed_tenants)}). The token is shown once; "
            "only its hash is stored:"
        )
        self.stdout.write(token)

    def _list(self, alias: str, options: dict[str, Any]) -> None:
        rows = IngestCredential.objects.using(alias).order_by("service_name", "created_at")
        if options["service"]:
            rows = rows.filter(service_name=options["service"])
        if not options["all"]:
            rows = rows.filter(revoked_at__isnull=True)
        for row in rows:
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
            self.stdout.write(
                f"{row.pk}\t{row.service_name}\t{row.token_prefix}…\t"
                f"{_tenants(row.allowed_tenants)}\t{row.created_at:%Y-%m-%d %H:%M}\t{state}"
            )

    def _revoke(self, alias: str, which: str) -> None:
        queryset = IngestCredential.objects.using(alias)
        which = which.strip().rstrip("…")
        if which.isdigit():
            matches = list(queryset.filter(pk=int(which)))
        elif which.startswith(TOKEN_PREFIX) and len(which) >= len(TOKEN_PREFIX) + 4:
            # A prefix as `list` shows it, or the whole token.
            found = queryset.filter(token_prefix__startswith=which[:SHOWN])
            if len(which) > SHOWN:
                found = found.filter(token_hash=hash_token(which))
            matches = list(found)
        else:
            raise CommandError(f"{which!r} is neither a credential id nor a token prefix")
        if not matches:
            raise CommandError(f"no ingest credential matches {which!r}")
        if len(matches) > 1:
            raise CommandError(f"{len(matches)} credentials match {which!r}: give its id")
        credential = matches[0]
        if not revoke(credential, using=alias):
            self.stdout.write(f"Credential {credential.pk} was already revoked.")
            return
        self.stdout.write(
            f"Revoked credential {credential.pk} of service {credential.service_name!r}."
        )


def _tenants(tenants: Any) -> str:
    names = [t if t else "(no tenant)" for t in tenants] if isinstance(tenants, list) else []
    return ", ".join(names) or "none"
