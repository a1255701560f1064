"""The API's seals, a prediction's seal and inclusion proof, and legal holds (ml_audit.api.trail):
shapes, permissions, tenant scope, filters, access log, bounded queries."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

from ml_audit.api.trail import HoldSerializer, PredictionSealSerializer, SealSerializer
from ml_audit.models import AccessLog, PredictionEvent, Seal
from ml_audit.retention import place_hold, release_hold
from ml_audit.sealing import seal_all
from ml_audit.services import ActorPayload
from tests.seals.helpers import KEY, SEAL_SETTINGS, db_id, seal_now, triggers_off
from tests.seals.test_proof import offline_verify

from .test_api import make_user, record

pytestmark = pytest.mark.django_db

SEALS = reverse("ml_audit_api:seal-list")
HOLDS = reverse("ml_audit_api:hold-list")
#: username -> the tenants the resolver allows (absent: every tenant).
TENANTS = {"acme-auditor": ["acme"]}


def resolver(request: Any) -> list[str] | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return TENANTS.get(user.get_username())


@pytest.fixture(autouse=True)
def _sealing_and_tenants(settings: Any) -> None:
    settings.ML_AUDIT = {**SEAL_SETTINGS, "API_TENANT_RESOLVER": resolver}


def client_for(user: User) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def auditor() -> APIClient:
    return client_for(make_user("auditor", "view_predictionevent", "view_seal", "view_legalhold"))


@pytest.fixture
def acme_auditor() -> APIClient:
    return client_for(
        make_user("acme-auditor", "view_predictionevent", "view_seal", "view_legalhold")
    )


def seal_url(pk: object) -> str:
    return reverse("ml_audit_api:seal-detail", args=[str(pk)])


def prediction_seal(pk: object) -> str:
    return reverse("ml_audit_api:prediction-seal", args=[str(pk)])


def hold_url(pk: object) -> str:
    return reverse("ml_audit_api:hold-detail", args=[str(pk)])


def tenant_event(tenant: str, i: int = 0) -> PredictionEvent:
    return record(
        prediction_id=f"{tenant}-{i}-{uuid.uuid4()}",
        actor=ActorPayload("user", f"{tenant}-user", tenant_id=tenant),
    )


# ----------------------------------------------------------------------------- seals


def test_seals_newest_first_with_their_heads(auditor: APIClient) -> None:
    for i in range(3):
        tenant_event("acme", i)
    seals = seal_all(max_rows=1)
    seal_now()
    response = auditor.get(SEALS)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [seal["id"] for seal in results] == list(range(Seal.objects.count(), 0, -1))
    newest = Seal.objects.get(id=results[0]["id"])
    body = results[0]
    assert list(body) == list(SealSerializer().fields)
    assert body["head"]["seal"] == body["id"]
    assert body["head"]["root"] == body["root"] == newest.root
    assert body["counts"] == newest.counts
    assert body["mac"] == newest.mac
    # Each seal names the head hash of the one before it.
    by_id = {seal["id"]: seal for seal in results}
    for seal in seals[1:]:
        assert by_id[seal.id]["previous_hash"] == by_id[seal.id - 1]["head_hash"]
    assert auditor.get(seal_url(1)).json() == by_id[1]


def test_seals_are_paged_by_cursor(auditor: APIClient) -> None:
    for i in range(3):
        tenant_event("acme", i)
    seal_all(max_rows=1)
    first = auditor.get(SEALS, {"page_size": "2"}).json()
    assert [seal["id"] for seal in first["results"]] == [3, 2]
    second = auditor.get(first["next"]).json()
    assert [seal["id"] for seal in second["results"]] == [1]
    assert auditor.get(SEALS, {"cursor": "garbage"}).status_code == 400
    assert auditor.get(SEALS, {"model_name": "x"}).status_code == 400


def test_seal_detail_404s_and_parameters(auditor: APIClient) -> None:
    tenant_event("acme")
    seal_now()
    assert auditor.get(seal_url(2)).status_code == 404
    assert auditor.get(seal_url("9" * 18)).status_code == 404
    too_long = auditor.get(f"{SEALS}{'9' * 30}/")
    assert too_long.status_code == 404
    assert too_long.json()["detail"]
    assert auditor.get(f"{SEALS}abc/").status_code == 404
    assert auditor.get(seal_url(1), {"page_size": "1"}).status_code == 400


def test_seals_need_view_seal_on_top_of_the_api_permission(settings: Any) -> None:
    tenant_event("acme")
    seal_now()
    only_predictions = client_for(make_user("reader", "view_predictionevent"))
    only_seals = client_for(make_user("sealer", "view_seal"))
    for client in (only_predictions, only_seals, APIClient()):
        assert client.get(SEALS).status_code in (401, 403)
        assert client.get(seal_url(1)).status_code in (401, 403)
    settings.ML_AUDIT = {**settings.ML_AUDIT, "API_PERMISSION_CLASSES": [AllowAny]}
    assert APIClient().get(SEALS).status_code in (401, 403)
    assert only_seals.get(SEALS).status_code == 200


def test_seals_are_shown_to_tenant_scoped_users(acme_auditor: APIClient) -> None:
    tenant_event("globex")
    seal_now()
    assert [seal["id"] for seal in acme_auditor.get(SEALS).json()["results"]] == [1]


def test_seal_reads_are_access_logged(auditor: APIClient) -> None:
    tenant_event("acme")
    seal_now()
    auditor.get(SEALS)
    auditor.get(seal_url(1))
    APIClient().get(SEALS)
    rows = list(AccessLog.objects.order_by("accessed_at", "id"))
    assert [(r.endpoint, r.status_code, r.returned_ids, r.result_count) for r in rows] == [
        ("seals-list", 200, [], 1),
        ("seals-detail", 200, [], 1),
        ("seals-list", rows[2].status_code, [], 0),
    ]
    assert rows[2].status_code in (401, 403)


def test_the_seal_list_costs_the_same_queries_whatever_its_size(auditor: APIClient) -> None:
    tenant_event("acme")
    seal_now()
    with CaptureQueriesContext(connection) as one:
        auditor.get(SEALS)
    for i in range(5):
        tenant_event("acme", i)
    seal_all(max_rows=1)
    with CaptureQueriesContext(connection) as six:
        assert len(auditor.get(SEALS).json()["results"]) == Seal.objects.count() > 5
    assert len(one) == len(six)


# ----------------------------------------------------------------------------- a prediction's seal


def test_a_predictions_seal_and_proof_check_offline(auditor: APIClient) -> None:
    events = [tenant_event("acme", i) for i in range(5)]
    seal_now()
    response = auditor.get(prediction_seal(events[3].pk))
    assert response.status_code == 200
    body = response.json()
    assert list(body) == list(PredictionSealSerializer().fields)
    assert (body["id"], body["status"], body["verified"]) == (str(events[3].pk), "sealed", True)
    assert body["content_hash"] == body["recomputed_hash"] == events[3].content_hash
    assert list(body["seal"]) == list(SealSerializer().fields)
    assert body["seal"] == auditor.get(seal_url(1)).json()
    assert {check["name"]: check["ok"] for check in body["checks"]} == {
        "row": True,
        "sealed_hash": True,
        "root": True,
        "inclusion": True,
        "head": True,
        "chain": True,
    }
    assert offline_verify(body, KEY.encode())
    # Another row hash (and so another leaf), or another sibling, leads to another root.
    other_hash = {**body["proof"], "row_hash": "00" * 32}
    other_hash["leaf"] = body["proof"]["leaf"].rsplit("|", 1)[0] + "|" + "00" * 32
    assert not offline_verify({**body, "proof": other_hash}, KEY.encode())
    tampered = json.loads(json.dumps(body))
    tampered["proof"]["audit_path"][0] = "00" * 32
    assert not offline_verify(tampered, KEY.encode())


def test_an_unsealed_and_a_tampered_prediction(auditor: APIClient) -> None:
    sealed = tenant_event("acme", 1)
    seal_now()
    unsealed_body = auditor.get(prediction_seal(tenant_event("acme", 2).pk)).json()
    assert unsealed_body["status"] == "not_sealed"
    assert unsealed_body["verified"] is False  # created before the horizon: inserted_row
    assert (unsealed_body["seal"], unsealed_body["proof"]) == (None, None)
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE ml_audit_predictionevent SET decision_outcome = 'x' WHERE id = %s",
            [db_id(sealed.pk)],
        )
    body = auditor.get(prediction_seal(sealed.pk)).json()
    assert body["verified"] is False
    assert body["summary"].startswith("Does NOT verify")
    assert body["recomputed_hash"] != body["content_hash"]


def test_a_prediction_not_sealed_yet(auditor: APIClient) -> None:
    body = auditor.get(prediction_seal(tenant_event("acme").pk)).json()
    assert (body["status"], body["verified"], body["seal"]) == ("not_sealed", None, None)
    assert body["summary"] == "Not sealed yet: no seal lists this row."


def test_a_predictions_seal_is_tenant_scoped_and_needs_view_seal(
    acme_auditor: APIClient,
) -> None:
    acme, globex = tenant_event("acme"), tenant_event("globex")
    seal_now()
    assert acme_auditor.get(prediction_seal(acme.pk)).status_code == 200
    assert acme_auditor.get(prediction_seal(globex.pk)).status_code == 404
    assert acme_auditor.get(prediction_seal(uuid.uuid4())).status_code == 404
    assert (
        acme_auditor.get(f"{reverse('ml_audit_api:prediction-list')}nope/seal/").status_code == 404
    )
    reader = client_for(make_user("reader", "view_predictionevent"))
    assert reader.get(prediction_seal(acme.pk)).status_code == 403
    assert acme_auditor.get(prediction_seal(acme.pk), {"page_size": "1"}).status_code == 400


def test_a_predictions_seal_is_access_logged_with_its_id(auditor: APIClient) -> None:
    event = tenant_event("acme")
    seal_now()
    auditor.get(prediction_seal(event.pk))
    [row] = AccessLog.objects.all()
    assert (row.endpoint, row.returned_ids, row.result_count) == (
        "predictions-seal",
        [str(event.pk)],
        1,
    )


def test_a_predictions_seal_costs_bounded_queries(auditor: APIClient) -> None:
    events = [tenant_event("acme", i) for i in range(40)]
    seal_now()
    with CaptureQueriesContext(connection) as queries:
        assert auditor.get(prediction_seal(events[0].pk)).json()["verified"] is True
    # Permissions, the visibility check, the proof's four, the access log.
    assert len(queries) <= 8


# ----------------------------------------------------------------------------- holds


@pytest.fixture
def holds() -> dict[str, Any]:
    acme = place_hold(reason="Subpoena A", created_by="alice", reference="A-1", tenant_id="acme")
    globex = place_hold(reason="Subpoena G", created_by="bob", reference="G-1", tenant_id="globex")
    everything = place_hold(reason="Audit", created_by="carol", everything=True)
    old_acme = place_hold(
        reason="Old",
        created_by="dave",
        tenant_id="acme",
        time_to=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    release = release_hold(old_acme, reason="Closed", created_by="dave")
    return {
        "acme": acme,
        "globex": globex,
        "everything": everything,
        "old_acme": old_acme,
        "release": release,
    }


def ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return {hold["id"] for hold in response.json()["results"]}


def test_holds_list_and_detail(auditor: APIClient, holds: dict[str, Any]) -> None:
    assert ids(auditor.get(HOLDS)) == {str(h.pk) for h in holds.values()}
    body = auditor.get(hold_url(holds["old_acme"].pk)).json()
    assert list(body) == list(HoldSerializer().fields)
    assert (body["action"], body["in_force"], body["released_by"]) == (
        "place",
        False,
        str(holds["release"].pk),
    )
    assert body["time_to"].startswith("2020-01-01T00:00:00")
    release = auditor.get(hold_url(holds["release"].pk)).json()
    assert (release["action"], release["releases"], release["in_force"]) == (
        "release",
        str(holds["old_acme"].pk),
        None,
    )
    acme = auditor.get(hold_url(holds["acme"].pk)).json()
    assert (acme["in_force"], acme["released_by"], acme["reason"]) == (True, None, "Subpoena A")


def test_holds_filters(auditor: APIClient, holds: dict[str, Any]) -> None:
    assert ids(auditor.get(HOLDS, {"in_force": "true"})) == {
        str(holds[name].pk) for name in ("acme", "globex", "everything")
    }
    assert ids(auditor.get(HOLDS, {"in_force": "false"})) == {str(holds["old_acme"].pk)}
    assert ids(auditor.get(HOLDS, {"action": "release"})) == {str(holds["release"].pk)}
    assert ids(auditor.get(HOLDS, {"tenant_id": "globex"})) == {str(holds["globex"].pk)}
    for bad in ({"in_force": "maybe"}, {"action": "delete"}, {"tenant": "acme"}):
        response = auditor.get(HOLDS, bad)
        assert response.status_code == 400
        assert set(response.json()) == set(bad)


def test_holds_are_tenant_scoped(acme_auditor: APIClient, holds: dict[str, Any]) -> None:
    visible = {str(holds[name].pk) for name in ("acme", "old_acme", "release")}
    assert ids(acme_auditor.get(HOLDS)) == visible
    for name in ("globex", "everything"):
        assert acme_auditor.get(hold_url(holds[name].pk)).status_code == 404
    assert acme_auditor.get(hold_url(holds["release"].pk)).status_code == 200


def test_holds_need_view_legalhold(holds: dict[str, Any]) -> None:
    sealer = client_for(make_user("sealer", "view_predictionevent", "view_seal"))
    assert sealer.get(HOLDS).status_code == 403
    assert sealer.get(hold_url(holds["acme"].pk)).status_code == 403
    assert APIClient().get(HOLDS).status_code in (401, 403)


def test_holds_reads_are_access_logged(auditor: APIClient, holds: dict[str, Any]) -> None:
    auditor.get(HOLDS, {"in_force": "true"})
    [row] = AccessLog.objects.all()
    assert (row.endpoint, row.result_count, row.returned_ids) == ("holds-list", 3, [])
    assert row.query == {"in_force": ["true"]}


def test_the_api_root_links_seals_and_holds(auditor: APIClient) -> None:
    body = auditor.get(reverse("ml_audit_api:api-root")).json()
    assert body["seals"] == f"http://testserver{SEALS}"
    assert body["holds"] == f"http://testserver{HOLDS}"


# ----------------------------------------------------------------------------- OpenAPI


def test_the_schema_documents_what_these_endpoints_return(auditor: APIClient) -> None:
    pytest.importorskip("drf_spectacular")
    events = [tenant_event("acme", i) for i in range(2)]
    seal_now()
    hold = place_hold(reason="why", created_by="alice", tenant_id="acme")
    response = auditor.get(
        reverse("ml_audit_api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    document = json.loads(response.content)
    schemas = document["components"]["schemas"]
    bodies = {
        "Seal": auditor.get(seal_url(1)).json(),
        "PredictionSeal": auditor.get(prediction_seal(events[0].pk)).json(),
        "Hold": auditor.get(hold_url(hold.pk)).json(),
    }
    bodies["SealHead"] = bodies["Seal"]["head"]
    bodies["InclusionProof"] = bodies["PredictionSeal"]["proof"]
    bodies["Check"] = bodies["PredictionSeal"]["checks"][0]
    for name, body in bodies.items():
        assert list(schemas[name]["properties"]) == list(body), name
        assert set(schemas[name]["required"]) <= set(body), name
    parameters = {
        p["name"]: p["schema"]
        for p in document["paths"]["/api/ml-audit/holds/"]["get"]["parameters"]
    }
    assert parameters["in_force"]["type"] == "boolean"
    assert parameters["action"]["enum"] == ["place", "release"]
    for name in bodies:
        assert "``" not in schemas[name].get("description", ""), name
