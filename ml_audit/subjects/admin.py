"""Admin of subject erasures (registered by ``ml_audit.admin``): read-only, tenant-scoped.

An auditor asked "was this person's data erased, when, by whom and why" finds the answer
here: each row is an ``ml_audit_forget`` (the subject's pseudonymous reference, which no
longer links to anyone, never the identifier). Subject keys are not shown anywhere: they are
the secrets that link a reference to a person.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ml_audit.admin import ScopedAdmin
from ml_audit.api import access
from ml_audit.subject_models import SubjectErasure

__all__ = ["SubjectErasureAdmin"]


@admin.register(SubjectErasure)
class SubjectErasureAdmin(ScopedAdmin):
    list_display = (
        "erased_at",
        "subject_ref",
        "tenant_id",
        "predictions",
        "erased_by",
        "reference",
    )
    search_fields = ("=subject_ref", "=reference")
    date_hierarchy = "erased_at"
    ordering = ("-erased_at", "-id")
    fields = (
        "subject_ref",
        "tenant_id",
        "predictions",
        "erased_at",
        "erased_by",
        "reference",
        "reason",
    )
    readonly_fields = fields

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return access.visible_tenant_rows(request, queryset)
