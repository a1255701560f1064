"""The admin's tamper evidence: the prediction page's seal panel, the Trail integrity page
(seals, a verification on demand, holds, purges) and each seal's page."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ml_audit.models import AccessLog, PredictionEvent, Seal
from ml_audit.retention import place_hold, release_hold
from ml_audit.retention_models import PurgeRecord
from ml_audit.sealing import seal_all
from ml_audit.sealing.admin import MAX_WINDOW
from tests.queries import all_queries
from tests.seals.helpers import db_id, populate, record, seal_now, triggers_off

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sealing")]

TRAIL = "/admin/ml_audit/seal/"
#: username -> the tenants the resolver allows (absent: every tenant).
TENANTS = {"acme-staff": ["acme"]}


def resolver(request: Any) -> list[str] | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return TENANTS.get(user.get_username())


@pytest.fixture(autouse=True)
def _tenant_scoping(sealing: dict[str, Any]) -> None:
    sealing["API_TENANT_RESOLVER"] = resolver


def staff(client: Client, username: str, *codenames: str) -> Client:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="ml_audit", codename__in=codenames)
    )
    client.force_login(user)
    return client


def prediction_page(client: Client, event: PredictionEvent) -> str:
    response = client.get(reverse("admin:ml_audit_predictionevent_change", args=[event.pk]))
    assert response.status_code == 200
    return response.content.decode()


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def verify_window(days: float = 1.0) -> dict[str, str]:
    now = timezone.localtime()
    return {
        "since": (now - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M"),
        "until": (now + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
        "_verify": "Verify this window",
    }


# ----------------------------------------------------------------------------- the prediction page


def test_prediction_page_shows_its_seal_and_that_it_verifies(admin_client: Client) -> None:
    events = populate(4)
    seal_now()
    html = prediction_page(admin_client, events[2])
    assert 'data-verdict="ok"' in html
    assert "Verifies: sealed in seal 1" in text(html)
    assert f'href="{reverse("admin:ml_audit_seal_change", args=[1])}"' in html
    for name in ("row", "sealed_hash", "root", "inclusion", "head", "chain"):
        assert f'data-check="{name}"' in html
    assert "✗" not in html


def test_prediction_page_says_not_sealed_yet(admin_client: Client) -> None:
    event = record(1)
    html = prediction_page(admin_client, event)
    assert 'data-verdict="pending"' in html
    assert "Not sealed yet" in text(html)
    assert "no seal has been cut yet (ML_AUDIT['SEALING'] is off)" in text(html).replace(
        "&#x27;", "'"
    )


def test_prediction_page_says_when_it_does_not_verify(admin_client: Client) -> None:
    events = populate(3)
    seal_now()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'decline' WHERE id = %s",
            [db_id(events[1].pk)],
        )
    html = prediction_page(admin_client, events[1])
    assert 'data-verdict="fail"' in html
    assert "Does NOT verify: its content does not match its content_hash." in text(html)
    assert 'data-verdict="ok"' in prediction_page(admin_client, events[0])


def test_the_seal_panel_needs_the_view_seal_permission(client: Client) -> None:
    event = record(1)
    seal_now()
    staff(client, "viewer", "view_predictionevent")
    assert "ml-audit-seal" not in prediction_page(client, event)
    client.logout()
    staff(client, "sealer", "view_predictionevent", "view_seal")
    assert "ml-audit-seal" in prediction_page(client, event)


@pytest.mark.parametrize("rows", [2, 50])
def test_the_seal_panel_costs_four_queries_whatever_the_seal_size(
    admin_client: Client, rows: int
) -> None:
    events = [record(i) for i in range(rows)]
    with all_queries() as unsealed:
        prediction_page(admin_client, events[0])
    seal_now()
    with all_queries() as sealed:
        prediction_page(admin_client, events[0])
    member_lists = [sql for sql in sealed if "ml_audit_sealmember" in sql]
    assert len(member_lists) == 2  # the row's member (and seal), the seal's member list
    assert len(sealed) == len(unsealed) + 1  # unsealed: the newest seal's horizon instead


# ----------------------------------------------------------------------------- Trail integrity


def test_trail_integrity_lists_the_seals_newest_first_and_paginated(
    admin_client: Client,
) -> None:
    for i in range(30):
        record(i)
    seal_all(max_rows=1)  # as many seals as rows, cut a second ahead: see seal_now
    seal_now()
    count = Seal.objects.count()
    assert count >= 26
    response = admin_client.get(TRAIL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Trail integrity</h1>" in html
    shown = [seal.id for seal in response.context["cl"].result_list]
    assert shown == list(range(count, count - 25, -1))
    assert "✓ verifies" in html
    second = admin_client.get(TRAIL, {"p": "2"})
    assert next(seal.id for seal in second.context["cl"].result_list) == count - 25


def test_trail_integrity_is_read_only_even_for_superusers(admin_client: Client) -> None:
    populate(2)
    seal_now()
    html = admin_client.get(TRAIL).content.decode()
    assert "/admin/ml_audit/seal/add/" not in html
    assert admin_client.get("/admin/ml_audit/seal/add/").status_code == 403
    assert admin_client.post("/admin/ml_audit/seal/1/change/", {"root": "0"}).status_code == 403
    assert admin_client.post("/admin/ml_audit/seal/1/delete/", {"post": "yes"}).status_code == 403
    assert Seal.objects.count() == 1


def test_verification_on_demand_reports_ok_and_is_access_logged(admin_client: Client) -> None:
    populate(3)
    seal_now()
    response = admin_client.post(TRAIL, verify_window())
    assert response.status_code == 200
    html = text(response.content.decode())
    assert 'data-ok="true"' in response.content.decode()
    assert "No tampering found" in html
    assert "3 prediction" in html
    assert "not stored" in html
    [row] = AccessLog.objects.filter(endpoint="admin-trail-verify")
    assert (row.username, row.method, row.status_code) == ("admin", "POST", 200)


def test_verification_on_demand_reports_tampering(admin_client: Client) -> None:
    events = populate(3)
    seal_now()
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'decline' WHERE id = %s",
            [db_id(events[0].pk)],
        )
    response = admin_client.post(TRAIL, verify_window())
    html = text(response.content.decode())
    assert 'data-ok="false"' in response.content.decode()
    assert "TAMPERING DETECTED (1 classes)" in html
    assert f"changed_row 1 prediction {events[0].pk} (seal 1)" in html


def test_verification_window_is_checked(admin_client: Client) -> None:
    too_long = verify_window(days=MAX_WINDOW.days + 1)
    response = admin_client.post(TRAIL, too_long)
    assert response.status_code == 400
    assert "A window of at most 31 days" in response.content.decode()
    backwards = {**verify_window(), "until": "2020-01-01T00:00"}
    assert admin_client.post(TRAIL, backwards).status_code == 400
    assert admin_client.post(TRAIL, {"_verify": "1"}).status_code == 400
    statuses = (
        AccessLog.objects.filter(endpoint="admin-trail-verify")
        .order_by("accessed_at")
        .values_list("status_code", flat=True)
    )
    assert list(statuses) == [400, 400, 400]


def test_verification_needs_view_seal_and_an_unscoped_user(client: Client) -> None:
    populate(2)
    seal_now()
    staff(client, "no-seals", "view_predictionevent")
    assert client.get(TRAIL).status_code == 403
    assert client.post(TRAIL, verify_window()).status_code == 403
    client.logout()
    staff(client, "acme-staff", "view_seal")
    page = client.get(TRAIL)
    assert page.status_code == 200  # seals carry no tenant's data: shown to a scoped user
    assert "ml-audit-verify-form" not in page.content.decode()
    assert "limited to some tenants" in page.content.decode()
    assert client.post(TRAIL, verify_window()).status_code == 403
    refused = AccessLog.objects.filter(endpoint="admin-trail-verify").order_by("accessed_at", "id")
    assert [(r.username, r.status_code) for r in refused] == [
        ("no-seals", 403),
        ("acme-staff", 403),
    ]


def test_verification_needs_the_csrf_token(admin_user: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(TRAIL, verify_window()).status_code == 403


def test_holds_in_force_and_released_tenant_scoped(admin_client: Client, client: Client) -> None:
    acme = place_hold(reason="Subpoena A", created_by="alice", reference="CASE-A", tenant_id="acme")
    globex = place_hold(
        reason="Subpoena G", created_by="bob", reference="CASE-G", tenant_id="globex"
    )
    everything = place_hold(
        reason="Audit", created_by="carol", reference="CASE-ALL", everything=True
    )
    release_hold(globex, reason="Case closed G", created_by="bob")
    page = admin_client.get(TRAIL).content.decode()
    in_force = page.split("<h3>In force")[1].split("<h3>Released")[0]
    released = page.split("<h3>Released")[1]
    assert "CASE-A" in in_force
    assert "CASE-ALL" in in_force
    assert "CASE-G" not in in_force
    assert "CASE-G" in released
    assert "Case closed G" in released
    assert reverse("admin:ml_audit_legalhold_change", args=[acme.pk]) in in_force

    staff(client, "acme-staff", "view_seal", "view_legalhold")
    scoped = client.get(TRAIL).content.decode()
    assert "CASE-A" in scoped
    assert "CASE-G" not in scoped
    assert "CASE-ALL" not in scoped
    assert str(everything.pk) not in scoped


def test_holds_and_purges_need_their_permissions(client: Client) -> None:
    place_hold(reason="Subpoena A", created_by="alice", reference="CASE-A", tenant_id="acme")
    staff(client, "sealer", "view_seal")
    page = client.get(TRAIL).content.decode()
    assert "ml-audit-holds" not in page
    assert "ml-audit-purges" not in page


def purge(run: uuid.UUID, batch: int, target: str, tenant: str, leaves: int) -> PurgeRecord:
    now = timezone.now()
    record_ = PurgeRecord(
        run_id=run,
        batch=batch,
        purged_at=now + dt.timedelta(seconds=batch),
        target=target,
        model_name="credit" if target == "prediction" else "",
        tenant_id=tenant,
        counts={target: leaves},
        leaves=leaves,
        root="00" * 32,
        time_from=now - dt.timedelta(days=900),
        time_to=now - dt.timedelta(days=800),
        policy={"rule": "DEFAULT_DAYS"},
        ran_by="ops@host",
    )
    record_.save()
    return record_


def test_purges_grouped_by_run_and_tenant_scoped(admin_client: Client, client: Client) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    purge(first, 1, "prediction", "acme", 1000)
    purge(first, 2, "prediction", "globex", 500)
    purge(first, 3, "access", "", 20)
    purge(second, 1, "prediction", "acme", 7)
    response = admin_client.get(TRAIL)
    runs = {run["run_id"]: run for run in response.context["purge_runs"]}
    assert (runs[first]["batches"], runs[first]["rows"], runs[first]["targets"]) == (
        3,
        1520,
        "access, prediction",
    )
    assert (runs[second]["batches"], runs[second]["rows"]) == (1, 7)
    assert f"/admin/ml_audit/purgerecord/?run_id={first}" in response.content.decode()

    staff(client, "acme-staff", "view_seal", "view_purgerecord")
    scoped = {run["run_id"]: run for run in client.get(TRAIL).context["purge_runs"]}
    assert (scoped[first]["batches"], scoped[first]["rows"]) == (1, 1000)
    assert scoped[second]["rows"] == 7


def test_seal_page_shows_its_head_hash_and_checks(admin_client: Client) -> None:
    populate(2)
    seal = seal_now()
    url = reverse("admin:ml_audit_seal_change", args=[seal.id])
    html = admin_client.get(url).content.decode()
    from ml_audit.sealing.heads import head_hash, head_of

    assert head_hash(head_of(seal)) in html
    assert html.count("ml-audit-check ml-audit-ok") == 3
    with triggers_off() as cursor:
        cursor.execute("UPDATE ml_audit_sealmember SET row_hash = %s WHERE id = 1", ["00" * 32])
    html = admin_client.get(url).content.decode()
    assert "seal_mismatch" in html
    assert "ml-audit-check ml-audit-fail" in html
