"""The admin's subject erasures: read-only, tenant-scoped, never a key or an identifier."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from ml_audit.models import SubjectErasure
from ml_audit.subjects import forget_subject, subject_ref
from tests.subjects.helpers import ALICE, BOB

pytestmark = pytest.mark.django_db

TENANTS = {"acme-viewer": ["acme"]}


def resolver(request: Any) -> list[str] | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return TENANTS.get(user.get_username())


@pytest.fixture
def erasures(subjects: dict[str, Any]) -> list[SubjectErasure]:
    subjects["API_TENANT_RESOLVER"] = resolver
    subject_ref(ALICE, tenant="acme", create=True)
    subject_ref(BOB, tenant="globex", create=True)
    return [
        forget_subject(
            ALICE, tenant="acme", reason="GDPR Art. 17", erased_by="dpo", reference="T-1"
        ),
        forget_subject(
            BOB, tenant="globex", reason="GDPR Art. 17", erased_by="dpo", reference="T-2"
        ),
    ]


def viewer(client: Client, username: str) -> Client:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_subjecterasure"))
    client.force_login(user)
    return client


def test_erasures_are_listed_and_shown_read_only(
    admin_client: Client, erasures: list[SubjectErasure]
) -> None:
    listing = admin_client.get(reverse("admin:ml_audit_subjecterasure_changelist"))
    assert listing.status_code == 200
    page = listing.content.decode()
    for erasure in erasures:
        assert erasure.subject_ref in page
    assert ALICE not in page
    assert BOB not in page
    detail = admin_client.get(
        reverse("admin:ml_audit_subjecterasure_change", args=[erasures[0].pk])
    )
    assert detail.status_code == 200
    assert "T-1" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
    add = admin_client.get(reverse("admin:ml_audit_subjecterasure_add"))
    assert add.status_code == 403
    delete = admin_client.post(
        reverse("admin:ml_audit_subjecterasure_delete", args=[erasures[0].pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    assert SubjectErasure.objects.count() == 2


def test_a_tenant_scoped_viewer_sees_only_its_tenants_erasures(
    client: Client, erasures: list[SubjectErasure]
) -> None:
    scoped = viewer(client, "acme-viewer")
    page = scoped.get(reverse("admin:ml_audit_subjecterasure_changelist")).content.decode()
    assert erasures[0].subject_ref in page
    assert erasures[1].subject_ref not in page
    other = scoped.get(reverse("admin:ml_audit_subjecterasure_change", args=[erasures[1].pk]))
    assert other.status_code in (302, 404)  # Django's "does not exist" redirect, or a 404


def test_subject_keys_are_not_in_the_admin(admin_client: Client) -> None:
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert "subjecterasure" in index
    assert "subjectkey" not in index
