"""Admin of the ingest endpoint's credentials (registered by ``ml_audit.admin``).

Unlike the audit trail's admin, this one writes: adding a credential issues a token, shown
once in the page's message (only its hash is stored); the "Revoke" action ends credentials.
Credentials are never deleted, so that who could write stays on record. The service name is
fixed once issued (it is the actor of what the token sent); the tenants and the description
may be changed.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ml_audit.exceptions import InvalidRecord
from ml_audit.ingest.auth import assign_token, check_service, revoke
from ml_audit.models import IngestCredential

__all__ = ["IngestCredentialAdmin", "IngestCredentialForm"]


class IngestCredentialForm(forms.ModelForm):  # type: ignore[type-arg]
    """Tenants as one id per line (or comma-separated), and "no tenant" as a checkbox."""

    tenants = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="The tenant ids this service may write, one per line or comma-separated.",
    )
    allow_no_tenant = forms.BooleanField(
        required=False, help_text="Also accept predictions that name no tenant."
    )

    class Meta:
        model = IngestCredential
        fields = ("service_name", "description")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.allowed_tenants or []
        self.fields["tenants"].initial = "\n".join(t for t in current if t)
        self.fields["allow_no_tenant"].initial = "" in current

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        raw = cleaned.get("tenants") or ""
        tenants = [t.strip() for t in raw.replace(",", "\n").splitlines() if t.strip()]
        if cleaned.get("allow_no_tenant"):
            tenants.append("")
        if not tenants:
            raise forms.ValidationError("Name at least one tenant, or allow no tenant.")
        service = cleaned.get("service_name") or self.instance.service_name
        try:
            service, tenant_list = check_service(service, tenants)
        except InvalidRecord as exc:
            raise forms.ValidationError(str(exc)) from None
        cleaned["service_name"] = service
        self.instance.allowed_tenants = tenant_list
        return cleaned


@admin.register(IngestCredential)
class IngestCredentialAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = IngestCredentialForm
    list_display = (
        "service_name",
        "token_prefix",
        "tenants_shown",
        "description",
        "created_at",
        "revoked_at",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("=service_name",)
    readonly_fields = ("token_prefix", "created_at", "revoked_at")
    actions = ("revoke_selected",)

    @admin.display(description="tenants")
    def tenants_shown(self, obj: IngestCredential) -> str:
        tenants = obj.allowed_tenants if isinstance(obj.allowed_tenants, list) else []
        return ", ".join(t or "(no tenant)" for t in tenants)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("service_name", *self.readonly_fields)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("service_name", "tenants", "allow_no_tenant", "description")
        return (
            "service_name",
            "token_prefix",
            "tenants",
            "allow_no_tenant",
            "description",
            "created_at",
            "revoked_at",
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        token = None if change else assign_token(obj)
        super().save_model(request, obj, form, change)
        if token is not None:
            self.message_user(
                request,
                f"Ingest token of {obj.service_name}: {token} — copy it now: it is shown only "
                "this once (only its hash is stored). Senders send it as "
                "'Authorization: Bearer <token>'.",
                messages.SUCCESS,
            )

    @admin.action(description="Revoke the selected credentials", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[IngestCredential]) -> None:
        revoked = sum(revoke(credential) for credential in queryset)
        self.message_user(request, f"Revoked {revoked} credential(s).", messages.SUCCESS)
