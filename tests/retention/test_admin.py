"""The holds admin: adding a placement or a release is the only write; permission-gated."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from ml_audit.retention import place_hold
from ml_audit.retention_models import LegalHold

pytestmark = pytest.mark.django_db

ADD = "/admin/ml_audit/legalhold/add/"


def _form(**values: str) -> dict[str, str]:
    data = {
        "action": "place",
        "releases": "",
        "tenant_id": "",
        "actor_type": "",
        "actor_id": "",
        "model_name": "",
        "time_from_0": "",
        "time_from_1": "",
        "time_to_0": "",
        "time_to_1": "",
        "prediction_ids_text": "",
        "reference": "",
        "reason": "",
    }
    data.update(values)
    return data


def _staff(client: Client, *codenames: str) -> User:
    user = User.objects.create_user("clerk", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def test_admin_places_a_hold_with_who_from_the_request(admin_client: Client) -> None:
    response = admin_client.post(
        ADD,
        _form(
            tenant_id="acme", prediction_ids_text="p1, p2\np3", reason="Subpoena", reference="C-1"
        ),
    )
    assert response.status_code == 302, response.content[:2000]
    hold = LegalHold.objects.get()
    assert (hold.action, hold.tenant_id, hold.prediction_ids) == (
        "place",
        "acme",
        ["p1", "p2", "p3"],
    )
    assert hold.created_by.startswith("admin (admin, user id")


def test_admin_releases_by_appending(admin_client: Client) -> None:
    hold = place_hold(reason="why", created_by="alice", model_name="credit")
    response = admin_client.post(ADD, _form(action="release", releases=str(hold.pk), reason="done"))
    assert response.status_code == 302
    release = LegalHold.objects.get(action="release")
    assert release.releases_id == hold.pk
    assert LegalHold.objects.get(pk=hold.pk).reason == "why"  # the placement is untouched


def test_admin_shows_validation_errors_and_writes_nothing(admin_client: Client) -> None:
    response = admin_client.post(ADD, _form(reason="no scope"))
    assert response.status_code == 200
    assert b"at least one scope criterion" in response.content
    assert LegalHold.objects.count() == 0


def test_no_change_or_delete_even_for_superusers(admin_client: Client) -> None:
    hold = place_hold(reason="why", created_by="alice", everything=True)
    url = f"/admin/ml_audit/legalhold/{hold.pk}/change/"
    response = admin_client.post(url, {"reason": "rewritten"})
    assert response.status_code == 403
    assert admin_client.post(f"/admin/ml_audit/legalhold/{hold.pk}/delete/").status_code == 403
    page = admin_client.get(url)
    assert page.status_code == 200  # viewable, read-only
    assert b"rewritten" not in page.content
    assert LegalHold.objects.get().reason == "why"


@pytest.mark.parametrize(
    ("codenames", "can_add"),
    [(("view_legalhold",), False), (("view_legalhold", "add_legalhold"), True)],
)
def test_adding_needs_the_add_permission(
    client: Client, codenames: tuple[str, ...], can_add: bool
) -> None:
    _staff(client, *codenames)
    response = client.post(ADD, _form(tenant_id="acme", reason="why"))
    assert (response.status_code == 302) is can_add
    assert LegalHold.objects.count() == (1 if can_add else 0)
    if can_add:
        assert LegalHold.objects.get().created_by.startswith("clerk")


def test_purge_records_are_read_only_in_the_admin(admin_client: Client, settings: Any) -> None:
    assert admin_client.get("/admin/ml_audit/purgerecord/").status_code == 200
    assert admin_client.get("/admin/ml_audit/purgerecord/add/").status_code == 403
