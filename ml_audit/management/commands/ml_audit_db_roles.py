"""``manage.py ml_audit_db_roles``: print, or with ``--apply`` run, the least-privilege
PostgreSQL layout of ml_audit's tables (:mod:`ml_audit.retention.roles`): an owner that runs
migrations, an application role that may only INSERT and SELECT the audit tables, the purge
role, a read-only auditor role. ``--apply`` needs a role that may create roles and change table
owners (a superuser or the database's administrator), and runs in one transaction.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, transaction

from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.retention.roles import RoleNames, layout_sql


def ml_audit_tables() -> list[str]:
    return sorted(model._meta.db_table for model in apps.get_app_config("ml_audit").get_models())


class Command(BaseCommand):
    help = "Print (or --apply) the least-privilege PostgreSQL roles and grants of ml_audit."

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = RoleNames()
        parser.add_argument("--apply", action="store_true", help="Run the SQL, don't print it.")
        parser.add_argument("--database", default=None, help="Alias (default: ML_AUDIT's).")
        parser.add_argument("--owner", default=defaults.owner, help="Owner (runs migrations).")
        parser.add_argument("--app", default=defaults.app, help="The application's role.")
        parser.add_argument(
            "--purge", default=None, help="Purge role (default: ML_AUDIT['PURGE_ROLE'])."
        )
        parser.add_argument("--auditor", default=defaults.auditor, help="Read-only role.")
        parser.add_argument("--schema", default="public", help="Schema of the tables.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            roles = RoleNames(
                owner=options["owner"],
                app=options["app"],
                purge=options["purge"] or audit_settings.PURGE_ROLE,
                auditor=options["auditor"],
            )
            statements = layout_sql(roles, ml_audit_tables(), options["schema"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not options["apply"]:
            for statement in statements:
                self.stdout.write(statement + ";")
            return
        alias = resolve_alias(options["database"])
        connection = connections[alias]
        if connection.vendor != "postgresql":
            raise CommandError("--apply needs PostgreSQL (SQLite has no roles).")
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        self.stdout.write(
            f"Applied: owner {roles.owner}, app {roles.app}, purge {roles.purge}, "
            f"auditor {roles.auditor}. Set their passwords (ALTER ROLE ... PASSWORD) and "
            f"grant {roles.purge} to the operators who purge."
        )
