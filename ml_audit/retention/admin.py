"""Admin of legal holds and purge records (registered by ``ml_audit.admin``).

Holds: the only write is adding a row, a placement or a release of a placement in force, for
users holding ``ml_audit.add_legalhold``; who and when come from the request, never from the
form. Nothing is changed or deleted, by superusers either. Purge records are read-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ml_audit.admin import ReadOnlyAdmin
from ml_audit.conf import resolve_alias
from ml_audit.exceptions import InvalidRecord
from ml_audit.retention.holds import InvalidHold, build_placement, build_release
from ml_audit.retention_models import HoldAction, LegalHold, PurgeRecord

__all__ = ["LegalHoldAdmin", "LegalHoldForm", "PurgeRecordAdmin"]

SCOPE_FIELDS = (
    "tenant_id",
    "actor_type",
    "actor_id",
    "model_name",
    "time_from",
    "time_to",
)


class LegalHoldForm(forms.ModelForm):  # type: ignore[type-arg]
    """Place a hold, or release one (choose it under "releases"); validated by the same
    functions as ``place_hold`` / ``release_hold``."""

    prediction_ids_text = forms.CharField(
        label="Prediction ids",
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="External prediction ids, one per line or comma-separated.",
    )
    everything = forms.BooleanField(
        required=False, help_text="Hold the whole trail (no scope criteria)."
    )

    class Meta:
        model = LegalHold
        fields = ("action", "releases", *SCOPE_FIELDS, "reference", "reason")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.request: HttpRequest | None = kwargs.pop("request", None)
        super().__init__(*args, **kwargs)
        releases: Any = self.fields.get("releases")
        if releases is not None:  # the add form; the change view shows read-only fields
            releases.queryset = LegalHold.objects.using(resolve_alias()).filter(
                action=HoldAction.PLACE, released_by__isnull=True
            )
            releases.required = False

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        who = _who(self.request)
        try:
            if data.get("action") == HoldAction.RELEASE:
                if data.get("releases") is None:
                    raise InvalidHold("choose the hold to release")
                self.built = build_release(
                    data["releases"], reason=data.get("reason", ""), created_by=who
                )
            else:
                ids = [
                    part.strip()
                    for line in (data.get("prediction_ids_text") or "").splitlines()
                    for part in line.split(",")
                    if part.strip()
                ]
                self.built = build_placement(
                    reason=data.get("reason", ""),
                    created_by=who,
                    reference=data.get("reference", ""),
                    prediction_ids=ids,
                    everything=bool(data.get("everything")),
                    **{  # type: ignore[arg-type]
                        name: data.get(name) or ("" if "time" not in name else None)
                        for name in SCOPE_FIELDS
                    },
                )
        except InvalidRecord as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data

    def _post_clean(self) -> None:
        # The instance is built by clean() (build_placement / build_release), not from fields.
        pass


def _who(request: HttpRequest | None) -> str:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ""
    return f"{user.get_username()} (admin, user id {user.pk})"


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = LegalHoldForm
    list_display = ("created_at", "action", "reference", "scope", "created_by", "in_force")
    list_filter = ("action",)
    ordering = ("-created_at", "-id")
    readonly_fields = (
        "id",
        "action",
        "releases",
        *SCOPE_FIELDS,
        "prediction_ids",
        "reference",
        "reason",
        "created_by",
        "created_at",
    )

    @admin.display(description="scope")
    def scope(self, obj: LegalHold) -> str:
        return "" if obj.action == HoldAction.RELEASE else obj.scope_text()

    @admin.display(boolean=True, description="in force")
    def in_force(self, obj: LegalHold) -> bool | None:
        if obj.action == HoldAction.RELEASE:
            return None
        return not LegalHold.objects.using(obj._state.db).filter(releases=obj).exists()

    def get_queryset(self, request: HttpRequest) -> QuerySet[LegalHold]:
        return super().get_queryset(request).using(resolve_alias())

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None:
            return form

        class RequestForm(form):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **inner: Any) -> None:
                inner["request"] = request
                super().__init__(*args, **inner)

        return RequestForm

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return self.readonly_fields
        return (
            "action",
            "releases",
            *SCOPE_FIELDS,
            "prediction_ids_text",
            "everything",
            "reference",
            "reason",
        )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:  # pragma: no cover - has_change_permission is False
            raise InvalidHold("holds are never changed")
        built: LegalHold = form.built
        built.save(using=resolve_alias())
        form.instance = built
        obj.pk, obj._state.adding, obj._state.db = built.pk, False, built._state.db

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(PurgeRecord)
class PurgeRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "purged_at",
        "run_id",
        "batch",
        "target",
        "model_name",
        "tenant_id",
        "leaves",
        "ran_by",
    )
    list_filter = ("target",)
    ordering = ("-purged_at", "-id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurgeRecord]:
        return super().get_queryset(request).using(resolve_alias())
