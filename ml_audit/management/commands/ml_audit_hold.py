"""``manage.py ml_audit_hold place|release|list``: legal holds (:mod:`ml_audit.retention.holds`).

    ml_audit_hold place --reason "Litigation 2025-17" --by alice --tenant acme \\
        [--actor-type user] [--actor ID] [--model NAME] [--prediction-id ID ...] \\
        [--from ISO] [--to ISO] [--reference CASE] [--everything]
    ml_audit_hold release HOLD_ID --reason "Case closed" --by alice
    ml_audit_hold list [--all] [--json]

Placing and releasing each append one row; nothing is ever edited or deleted.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import InvalidRecord
from ml_audit.retention.holds import place_hold, release_hold
from ml_audit.retention_models import HoldAction, LegalHold


def _when(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"not an ISO 8601 date or time: {text!r}") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Place, release or list legal holds on the audit trail."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=None, help="Alias (default: ML_AUDIT's).")
        sub = parser.add_subparsers(dest="action", required=True)
        place = sub.add_parser("place", help="Place a hold.")
        place.add_argument("--reason", required=True, help="Why (required).")
        place.add_argument("--by", default=None, help="Who (default: the OS user).")
        place.add_argument("--reference", default="", help="Case or ticket number.")
        place.add_argument("--tenant", default="", help="Tenant id.")
        place.add_argument("--actor-type", default="", help="Actor type (with --actor).")
        place.add_argument("--actor", default="", help="Actor id.")
        place.add_argument("--model", default="", help="Model name.")
        place.add_argument(
            "--prediction-id", action="append", default=[], help="External prediction id."
        )
        place.add_argument("--from", dest="time_from", type=_when, default=None)
        place.add_argument("--to", dest="time_to", type=_when, default=None)
        place.add_argument("--everything", action="store_true", help="Hold the whole trail.")
        release = sub.add_parser("release", help="Release a hold.")
        release.add_argument("hold_id")
        release.add_argument("--reason", required=True, help="Why (required).")
        release.add_argument("--by", default=None, help="Who (default: the OS user).")
        listing = sub.add_parser("list", help="List holds in force.")
        listing.add_argument("--all", action="store_true", help="Released holds too.")
        listing.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = resolve_alias(options["database"])
        action = options["action"]
        try:
            if action == "place":
                hold = place_hold(
                    reason=options["reason"],
                    created_by=options["by"] or getpass.getuser(),
                    reference=options["reference"],
                    tenant_id=options["tenant"],
                    actor_type=options["actor_type"],
                    actor_id=options["actor"],
                    model_name=options["model"],
                    prediction_ids=options["prediction_id"],
                    time_from=options["time_from"],
                    time_to=options["time_to"],
                    everything=options["everything"],
                    using=alias,
                )
                self.stdout.write(f"Placed hold {hold.pk}: {hold.scope_text()}")
            elif action == "release":
                release = release_hold(
                    options["hold_id"],
                    reason=options["reason"],
                    created_by=options["by"] or getpass.getuser(),
                    using=alias,
                )
                self.stdout.write(f"Released hold {release.releases_id} ({release.pk})")
            else:
                self._list(alias, everything=options["all"], as_json=options["json"])
        except InvalidRecord as exc:
            raise CommandError(str(exc)) from exc

    def _list(self, alias: str, *, everything: bool, as_json: bool) -> None:
        placed = LegalHold.objects.using(alias).filter(action=HoldAction.PLACE)
        releases = {
            row.releases_id: row
            for row in LegalHold.objects.using(alias).filter(action=HoldAction.RELEASE)
        }
        rows = []
        for hold in placed.order_by("created_at", "id"):
            release = releases.get(hold.pk)
            if release is not None and not everything:
                continue
            rows.append(
                {
                    "id": str(hold.pk),
                    "scope": hold.scope_text(),
                    "reference": hold.reference,
                    "reason": hold.reason,
                    "placed_by": hold.created_by,
                    "placed_at": hold.created_at.isoformat(),
                    "released_by": release.created_by if release else None,
                    "released_at": release.created_at.isoformat() if release else None,
                    "release_reason": release.reason if release else None,
                }
            )
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No holds in force." if not everything else "No holds.")
        for row in rows:
            state = (
                f"released {row['released_at']} by {row['released_by']}"
                if row["released_at"]
                else "in force"
            )
            self.stdout.write(
                f"{row['id']}  {row['scope']}  [{row['reference'] or '-'}] placed "
                f"{row['placed_at']} by {row['placed_by']}: {row['reason']} ({state})"
            )
