"""``GET subjects/{ref}/report/``: permissions, tenants, the access log, JSON and HTML."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from ml_audit import store
from ml_audit.models import AccessLog
from ml_audit.records import ActorPayload
from ml_audit.reports import subject_report
from ml_audit.subjects import forget_subject
from tests.factories import redacted

from .conftest import History
from .helpers import decide

pytestmark = pytest.mark.django_db

ROOT = "/api/ml-audit/"
REPORT_PERMISSIONS = ("view_predictionevent", "view_review", "view_outcome")
HAS_SPECTACULAR = importlib.util.find_spec("drf_spectacular") is not None


def url(ref: str) -> str:
    return f"{ROOT}subjects/{ref}/report/"


def make_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def officer() -> User:
    return make_user("officer", *REPORT_PERMISSIONS)


@pytest.fixture
def client(officer: User) -> APIClient:
    return client_for(officer)


def last_log() -> AccessLog:
    return AccessLog.objects.order_by("-accessed_at", "-id").first()  # type: ignore[return-value]


def test_json_by_default_and_access_logged(
    client: APIClient, officer: User, history: History
) -> None:
    response = client.get(url(history.ref))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    expected = subject_report(history.ref)
    assert body["generated_at"]
    assert {**body, "generated_at": ""} == {**expected, "generated_at": ""}
    row = last_log()
    assert (row.endpoint, row.status_code, row.username) == ("subjects-report", 200, "officer")
    assert row.returned_ids == [str(history.declined.pk), str(history.approved.pk)]
    assert row.result_count == 2
    assert row.path == url(history.ref)


@pytest.mark.parametrize(
    ("query", "headers"),
    [({"format": "html"}, {}), ({}, {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"})],
)
def test_html_on_request(
    client: APIClient, history: History, query: dict[str, str], headers: dict[str, str]
) -> None:
    response = client.get(url(history.ref), query, **headers)  # type: ignore[arg-type]

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    html = response.content.decode()
    assert html.startswith("<!DOCTYPE html>")
    assert "Debt is high relative to income" in html
    assert last_log().returned_ids == [str(history.declined.pk), str(history.approved.pk)]


def test_json_also_when_asked_by_name(client: APIClient, history: History) -> None:
    response = client.get(url(history.ref), {"format": "json"})

    assert response.status_code == 200
    assert response.json()["decision_count"] == 2


def test_an_uppercase_reference_is_the_same_subject(client: APIClient, history: History) -> None:
    response = client.get(url(history.ref.upper()))

    assert response.status_code == 200
    assert response.json()["subject_ref"] == history.ref


@pytest.mark.parametrize(
    "codenames",
    [
        (),
        ("view_predictionevent",),
        ("view_predictionevent", "view_review"),
        ("view_review", "view_outcome"),
    ],
)
def test_every_permission_is_needed(history: History, codenames: tuple[str, ...]) -> None:
    response = client_for(make_user("someone", *codenames)).get(url(history.ref))

    assert response.status_code == 403
    assert "decisions" not in response.json()
    row = last_log()
    assert (row.status_code, row.returned_ids) == (403, [])


def test_anonymous_is_refused(history: History) -> None:
    response = client_for(None).get(url(history.ref))

    assert response.status_code in (401, 403)
    assert last_log().returned_ids == []


def test_writes_are_not_allowed(client: APIClient, history: History) -> None:
    assert client.post(url(history.ref), {}).status_code == 405
    assert client.delete(url(history.ref)).status_code == 405


def test_a_tenant_scoped_reader_sees_only_its_tenants_decisions(
    settings: Any, client: APIClient, history: History
) -> None:
    # The same reference in another tenant (written as an ingest could write it).
    other = store.write(
        redacted(
            prediction_id="globex-same-ref",
            subject_ref=history.ref,
            actor=ActorPayload("service", "batch", tenant_id="globex"),
        )
    )
    settings.ML_AUDIT = {**settings.ML_AUDIT, "API_TENANT_RESOLVER": lambda request: ["globex"]}

    response = client.get(url(history.ref))

    assert response.status_code == 200
    assert [d["id"] for d in response.json()["decisions"]] == [str(other.pk)]
    row = last_log()
    assert (row.returned_ids, row.tenant_scope) == ([str(other.pk)], ["globex"])

    settings.ML_AUDIT = {**settings.ML_AUDIT, "API_TENANT_RESOLVER": lambda request: ["initech"]}
    assert client.get(url(history.ref)).status_code == 404
    settings.ML_AUDIT = {**settings.ML_AUDIT, "API_TENANT_RESOLVER": lambda request: None}
    assert client.get(url(history.ref)).json()["decision_count"] == 3


def test_unknown_subject_is_a_404(client: APIClient, history: History) -> None:
    response = client.get(url("ab" * 32))

    assert response.status_code == 404
    assert response.json() == {
        "detail": "No decision about this subject is stored, or visible to you."
    }
    assert last_log().status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "subjects/abc/report/",
        f"subjects/{'0' * 63}/report/",
        f"subjects/{'0' * 65}/report/",
        f"subjects/{'g' * 64}/report/",
        f"subjects/{'0' * 64}/",
        "subjects/",
    ],
)
def test_a_malformed_reference_names_no_endpoint(client: APIClient, path: str) -> None:
    response = client.get(f"{ROOT}{path}")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert last_log().endpoint == "not-found"


def test_an_unknown_query_parameter_is_a_400(client: APIClient, history: History) -> None:
    response = client.get(url(history.ref), {"tenant": "acme"})

    assert response.status_code == 400
    assert "tenant" in response.json()


def test_a_forgotten_subject_is_gone(client: APIClient, history: History) -> None:
    forget_subject("applicant-1", tenant="acme", reason="GDPR Art. 17", erased_by="dpo")

    response = client.get(url(history.ref))

    assert response.status_code == 410
    assert "was forgotten on" in response.json()["detail"]
    assert last_log().returned_ids == []


def test_errors_as_a_page_for_a_browser(client: APIClient, history: History) -> None:
    response = client.get(url("cd" * 32), HTTP_ACCEPT="text/html")

    assert response.status_code == 404
    assert response["Content-Type"] == "text/html; charset=utf-8"
    html = response.content.decode()
    assert "<h1>No report for this person</h1>" in html
    assert "No decision about this subject is stored, or visible to you." in html

    reader = make_user("reader", "view_predictionevent")
    refused = client_for(reader).get(url(history.ref), {"format": "html"})
    assert refused.status_code == 403
    assert "You may not see this report" in refused.content.decode()
    assert "view_review" in refused.content.decode()


def test_the_decisions_are_bounded_by_the_page_size_setting(
    settings: Any, client: APIClient, history: History
) -> None:
    decide(prediction_id="app-3")
    settings.ML_AUDIT = {**settings.ML_AUDIT, "API_MAX_PAGE_SIZE": 2}

    body = client.get(url(history.ref)).json()

    assert (body["decision_count"], body["truncated"]) == (2, True)
    assert len(last_log().returned_ids) == 2


@pytest.mark.skipif(not HAS_SPECTACULAR, reason="needs drf-spectacular (the openapi extra)")
def test_the_endpoint_is_in_the_openapi_document(client: APIClient, officer: User) -> None:
    document = client.get(f"{ROOT}schema/", {"format": "json"}).json()

    operation = document["paths"]["/api/ml-audit/subjects/{subject_ref}/report/"]["get"]
    [parameter] = [p for p in operation["parameters"] if p["in"] == "path"]
    assert parameter["schema"]["pattern"] == "^[0-9a-fA-F]{64}$"
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "404", "410"}
    content = operation["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/SubjectReport"}
    assert "text/html" in content
    report = document["components"]["schemas"]["SubjectReport"]
    assert set(report["required"]) == {
        "subject_ref",
        "generated_at",
        "decision_count",
        "truncated",
        "decisions",
    }
