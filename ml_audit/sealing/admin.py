"""Admin of the tamper evidence (registered by ``ml_audit.admin``): the "Trail integrity" page
and the seal panel of the prediction page.

**Trail integrity** is the change list of :class:`~ml_audit.seal_models.Seal` (``ml_audit`` >
Seals, for users with ``ml_audit.view_seal``), read-only like every audit table:

- the seals, newest first, paginated, each with its head's HMAC checked (no query);
- a verification run on demand (:func:`ml_audit.sealing.verifier.verify`) over a time window of
  at most :data:`MAX_WINDOW`, started with a button (a ``POST`` with the CSRF token) by a user
  holding ``ml_audit.view_seal`` whose tenant scope is unrestricted (the report names rows of
  every tenant). Its result is shown in the response and **kept nowhere**: ml_audit stores no
  verification results (that would need a table of its own), and ``ml_audit_verify`` runs are
  not recorded either. Each run is access-logged (endpoint ``admin-trail-verify``);
- legal holds in force and released (``ml_audit.view_legalhold``) and purges grouped by run
  (``ml_audit.view_purgerecord``), tenant-scoped as the API scopes them
  (:func:`ml_audit.api.access.visible_holds`, :func:`~ml_audit.api.access.visible_purges`).
  Adding a hold stays the hold admin's (the one write).

A seal's change page shows its head, head hash, and the checks of :func:`~.proof.check_seal`
(its member list hashed to its root, its HMAC, its links to its two neighbours).

The prediction page's "Seal" panel (:func:`seal_panel`, shown with ``ml_audit.view_seal``) is
:func:`ml_audit.sealing.proof.prove_row` of that prediction: four queries at most, whatever the
size of the trail.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Min, Sum
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ml_audit.admin import ReadOnlyAdmin
from ml_audit.api import access
from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.retention_models import HoldAction, LegalHold, PurgeRecord
from ml_audit.seal_models import Seal
from ml_audit.sealing import proof
from ml_audit.sealing.heads import head_hash, head_of
from ml_audit.sealing.sealer import EPOCH
from ml_audit.sealing.tables import PREDICTION

__all__ = ["MAX_WINDOW", "SealAdmin", "VerifyForm", "seal_panel"]

#: The longest window a verification started from the admin may cover; the whole trail is
#: ``manage.py ml_audit_verify``'s (a request thread has a time limit, a command has none).
MAX_WINDOW = dt.timedelta(days=31)
#: The permission that shows seals (and lets an unscoped user start a verification).
VIEW_SEAL = "ml_audit.view_seal"
VERIFY_ENDPOINT = "admin-trail-verify"
#: Holds and purge runs listed on the page (the newest; the full lists are their own admins').
LISTED = 50


def seal_panel(obj: Any, admin_site: str = "admin") -> SafeString:
    """The prediction page's seal panel: which seal covers ``obj``, and whether it verifies."""
    found = proof.prove_row(PREDICTION.kind, obj.pk, using=obj._state.db)
    seal_url = None
    if found.seal is not None:
        seal_url = reverse(f"{admin_site}:ml_audit_seal_change", args=[found.seal.id])
    return render_to_string(
        "ml_audit/admin/seal_status.html",
        {
            "proof": found,
            "verdict": _verdict(found.verified, found.status),
            "seal_url": seal_url,
            "trail_url": reverse(f"{admin_site}:ml_audit_seal_changelist"),
        },
    )


def _verdict(verified: bool | None, status: str = "sealed") -> str:
    if verified is True:
        return "ok"
    if verified is False:
        return "fail"
    return "pending" if status == "not_sealed" else "unknown"


class VerifyForm(forms.Form):
    """The window of a verification started from the admin: ``[since, until)``, at most
    :data:`MAX_WINDOW` long."""

    since = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Rows recording a time from here (your time zone)…",
    )
    until = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="…to before here.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since is not None and until is not None:
            if until <= since:
                raise forms.ValidationError("The end of the window must come after its start.")
            if until - since > MAX_WINDOW:
                raise forms.ValidationError(
                    f"A window of at most {MAX_WINDOW.days} days can be verified here; run "
                    "manage.py ml_audit_verify for longer ones (or the whole trail)."
                )
        return data


def _default_window() -> dict[str, dt.datetime]:
    now = timezone.localtime().replace(second=0, microsecond=0)
    return {"since": now - dt.timedelta(days=1), "until": now + dt.timedelta(minutes=1)}


@admin.register(Seal)
class SealAdmin(ReadOnlyAdmin):
    """The Trail integrity page (this change list) and each seal's page; see the module
    docstring."""

    change_list_template = "ml_audit/admin/trail_integrity.html"
    list_display = (
        "number",
        "created_at",
        "rows",
        "counts_text",
        "covered",
        "horizon_text",
        "key_id",
        "head_status",
    )
    list_display_links = ("number",)
    ordering = ("-id",)
    list_per_page = 25
    actions = None
    fields = (
        "id",
        "created_at",
        "previous_hash",
        "root",
        "leaves",
        "members_from",
        "members_to",
        "counts",
        "horizon",
        "covered_from",
        "covered_to",
        "algorithm",
        "key_id",
        "mac",
        "head_hash_text",
        "integrity",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).using(resolve_alias())

    def get_urls(self) -> list[URLPattern]:
        urls = super().get_urls()
        changelist = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        for url in urls:
            if url.name == changelist:
                # A refused or failed verification's access-log row must not be rolled back
                # with an ATOMIC_REQUESTS transaction (as the access-logged admins).
                url.callback._non_atomic_requests = access.EVERY_ALIAS  # type: ignore[attr-defined]
        return urls

    @admin.display(description="seal", ordering="id")
    def number(self, obj: Seal) -> str:
        return f"Seal {obj.id}"

    @admin.display(description="rows")
    def rows(self, obj: Seal) -> int:
        return obj.leaves

    @admin.display(description="per table")
    def counts_text(self, obj: Seal) -> str:
        counts = obj.counts if isinstance(obj.counts, dict) else {}
        return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()) if count)

    @admin.display(description="covered (row creation)")
    def covered(self, obj: Seal) -> str:
        if obj.covered_from is None or obj.covered_to is None:
            return "-"
        return f"{_short(obj.covered_from)} to {_short(obj.covered_to)}"

    @admin.display(description="horizon")
    def horizon_text(self, obj: Seal) -> str:
        # A first seal cut short by SEAL_MAX_ROWS vouches for no time yet (the sealer's EPOCH).
        if obj.horizon == EPOCH:
            return "none yet (cut short)"
        return _short(obj.horizon)

    @admin.display(description="head HMAC")
    def head_status(self, obj: Seal) -> str:
        check = proof.head_check(obj)
        return format_html(
            '<span class="ml-audit-check ml-audit-{}" title="{}">{}</span>',
            _verdict(check.ok),
            check.message,
            {True: "✓ verifies", False: "✗ FORGED", None: "? key unknown"}[check.ok],
        )

    @admin.display(description="head hash")
    def head_hash_text(self, obj: Seal) -> str:
        return format_html("<code>{}</code>", head_hash(head_of(obj)))

    @admin.display(description="integrity")
    def integrity(self, obj: Seal) -> SafeString:
        checks = proof.check_seal(obj, using=obj._state.db)
        return render_to_string(
            "ml_audit/admin/seal_checks.html",
            {"checks": checks, "verdict": _verdict(proof.overall(checks))},
        )

    # ------------------------------------------------------------------ the Trail integrity page

    def can_verify(self, request: HttpRequest) -> tuple[bool, str]:
        """Whether ``request`` may start a verification, and if not, why."""
        user = getattr(request, "user", None)
        if user is None or not user.is_active or not user.is_staff:
            return False, "Staff only."
        if not user.has_perm(VIEW_SEAL):
            return False, f"Starting a verification needs the permission {VIEW_SEAL}."
        if access.allowed_tenants(request) is not None:
            return False, (
                "A verification reads and reports rows of every tenant; your access is limited "
                "to some tenants. Ask an auditor with unrestricted access."
            )
        return True, ""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        allowed, why_not = self.can_verify(request)
        if request.method == "POST" and not (allowed and self.has_view_permission(request)):
            self._record_verification(request, 403)
            raise PermissionDenied(why_not)
        if not self.has_view_permission(request):
            raise PermissionDenied
        context: dict[str, Any] = dict(extra_context or {})
        status = 200
        if request.method == "POST":
            form = VerifyForm(request.POST)
            if form.is_valid():
                from ml_audit.sealing.verifier import verify

                since, until = form.cleaned_data["since"], form.cleaned_data["until"]
                try:
                    report = verify(resolve_alias(), since=since, until=until)
                except Exception:
                    self._record_verification(request, 500)
                    raise
                context["report"] = _report_context(report, since, until)
            else:
                status = 400
            self._record_verification(request, status)
        else:
            form = VerifyForm(initial=_default_window())
        context.update(
            title="Trail integrity",
            verify_form=form,
            can_verify=allowed,
            cannot_verify=why_not,
            max_window_days=MAX_WINDOW.days,
            sealing=_sealing_context(),
            **self._holds_context(request),
            **self._purges_context(request),
        )
        response = super().changelist_view(request, context)
        if status != 200 and isinstance(response, TemplateResponse):
            response.status_code = status
        return response

    def _record_verification(self, request: HttpRequest, status: int) -> None:
        if audit_settings.API_ACCESS_LOG:
            access.record_access(
                request,
                user=getattr(request, "user", None),
                endpoint=VERIFY_ENDPOINT,
                status_code=status,
            )

    def _holds_context(self, request: HttpRequest) -> dict[str, Any]:
        user = getattr(request, "user", None)
        if user is None or not user.has_perm("ml_audit.view_legalhold"):
            return {"show_holds": False}
        placed = access.visible_holds(
            request, LegalHold.objects.using(resolve_alias()).filter(action=HoldAction.PLACE)
        )
        in_force = placed.filter(released_by__isnull=True).order_by("-created_at", "-id")
        released = (
            placed.filter(released_by__isnull=False)
            .select_related("released_by")
            .order_by("-released_by__created_at", "-id")
        )
        return {
            "show_holds": True,
            "holds_in_force": list(in_force[:LISTED]),
            "holds_released": list(released[:LISTED]),
            "listed": LISTED,
        }

    def _purges_context(self, request: HttpRequest) -> dict[str, Any]:
        user = getattr(request, "user", None)
        if user is None or not user.has_perm("ml_audit.view_purgerecord"):
            return {"show_purges": False}
        batches = access.visible_purges(request, PurgeRecord.objects.using(resolve_alias()))
        groups = list(
            batches.order_by()
            .values("run_id", "target")
            .annotate(
                first=Min("purged_at"),
                last=Max("purged_at"),
                batches=Count("id"),
                rows=Sum("leaves"),
                ran_by=Max("ran_by"),
                time_from=Min("time_from"),
                time_to=Max("time_to"),
            )
            .order_by("-last")[: LISTED * 2]
        )
        runs: dict[Any, dict[str, Any]] = {}
        for group in groups:
            run = runs.setdefault(
                group["run_id"], {**group, "targets": [], "batches": 0, "rows": 0}
            )
            run["targets"].append(group["target"])
            run["batches"] += group["batches"]
            run["rows"] += group["rows"] or 0
            run["first"] = min(run["first"], group["first"])
            run["last"] = max(run["last"], group["last"])
            run["time_from"] = min(run["time_from"], group["time_from"])
            run["time_to"] = max(run["time_to"], group["time_to"])
        purge_list = reverse(f"{self.admin_site.name}:ml_audit_purgerecord_changelist")
        listed = sorted(runs.values(), key=lambda run: run["last"], reverse=True)[:LISTED]
        for run in listed:
            run["targets"] = ", ".join(sorted(set(run["targets"])))
            run["url"] = f"{purge_list}?run_id={run['run_id']}"
        return {"show_purges": True, "purge_runs": listed}


def _sealing_context() -> dict[str, Any]:
    return {
        "on": audit_settings.SEALING,
        "key_id": audit_settings.SEAL_KEY_ID if audit_settings.SEAL_KEY is not None else None,
        "lag": audit_settings.SEAL_LAG_SECONDS,
    }


def _ref(first: dict[str, Any]) -> str:
    """What a finding's ``first`` names, for a person: a row (and its seal) or a seal."""
    if "table" in first:
        seal = f" (seal {first['seal']})" if first.get("seal") else ""
        return f"{first['table']} {first.get('id', '')}{seal}"
    return f"seal {first.get('seal')}"


def _report_context(report: Any, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    data = report.as_json()
    return {
        "ok": report.ok,
        "since": since,
        "until": until,
        "checked": data["checked"],
        "findings": [
            {**finding, "first_text": _ref(finding["first"])} for finding in data["findings"]
        ],
        "notices": [{**notice, "first_text": _ref(notice["first"])} for notice in data["notices"]],
        "latest_seal": data["latest_seal"],
        "seconds": data["seconds"],
        "lines": report.lines(),
    }


def _short(value: dt.datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")
