"""The OpenAPI 3 document of the API (``schema/``, drf-spectacular: the ``openapi`` extra)."""

from __future__ import annotations

import importlib
import importlib.util
import json
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission, User
from django.urls import clear_url_caches, reverse
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

import ml_audit.api.urls
from ml_audit.models import AccessLog

pytest.importorskip(
    "drf_spectacular", reason="drf-spectacular (the openapi extra) is not installed"
)

pytestmark = pytest.mark.django_db

JSON = "application/vnd.oai.openapi+json"
PREFIX = "/api/ml-audit"

#: Every query parameter of GET predictions/ with its documented schema type.
PREDICTION_FILTERS = {
    "model_name": "string",
    "model_version": "string",
    "actor_type": "string",
    "actor_id": "string",
    "tenant_id": "string",
    "time_from": "string",
    "time_to": "string",
    "decision_outcome": "string",
    "environment": "string",
    "has_explanation": "boolean",
    "status": "string",
    "min_confidence": "number",
    "max_confidence": "number",
    "trace_id": "string",
    "prediction_id": "string",
    "subject": "string",
    "review_action": "string",
    "has_override": "boolean",
    "has_outcome": "boolean",
}


def schema_url() -> str:
    return reverse("ml_audit_api:schema")


def make_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)


def fetch(client: APIClient) -> dict[str, Any]:
    response = client.get(schema_url(), HTTP_ACCEPT=JSON)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith(JSON)
    document: dict[str, Any] = json.loads(response.content)
    return document


@pytest.fixture
def client() -> APIClient:
    api_client = APIClient()
    api_client.force_authenticate(
        make_user("reader", "view_predictionevent", "view_seal", "view_legalhold")
    )
    return api_client


@pytest.fixture
def document(client: APIClient) -> dict[str, Any]:
    return fetch(client)


def query_parameters(document: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    operation = document["paths"][path]["get"]
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}


def test_url_is_named_and_mounted_with_the_api() -> None:
    assert schema_url() == f"{PREFIX}/schema/"


def test_needs_no_project_settings() -> None:
    # Neither drf_spectacular in INSTALLED_APPS nor REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'].
    assert "drf_spectacular" not in django_settings.INSTALLED_APPS
    rest_framework = getattr(django_settings, "REST_FRAMEWORK", {})
    assert "DEFAULT_SCHEMA_CLASS" not in rest_framework


def test_is_a_valid_openapi_3_document(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "django-ml-audit API"
    try:
        from openapi_spec_validator import validate
    except ImportError:  # structure only
        assert isinstance(document["paths"], dict)
        assert isinstance(document["components"]["schemas"], dict)
    else:
        validate(document)


def test_default_rendering_is_yaml(client: APIClient) -> None:
    response = client.get(schema_url())
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.")


def test_lists_the_api_endpoints_and_nothing_else(document: dict[str, Any]) -> None:
    assert all(path.startswith(f"{PREFIX}/") for path in document["paths"])
    assert {
        f"{PREFIX}/predictions/",
        f"{PREFIX}/predictions/{{id}}/",
        f"{PREFIX}/models/",
        f"{PREFIX}/models/{{id}}/",
        f"{PREFIX}/traces/{{trace_id}}/",
        f"{PREFIX}/seals/",
        f"{PREFIX}/seals/{{id}}/",
        f"{PREFIX}/predictions/{{id}}/seal/",
        f"{PREFIX}/holds/",
        f"{PREFIX}/holds/{{id}}/",
        f"{PREFIX}/predictions/{{id}}/reviews/",
    } <= set(document["paths"])
    for path, path_item in document["paths"].items():
        # Read-only, but for appending a review (tests/oversight/test_api.py).
        writes = {"post"} if path == f"{PREFIX}/predictions/{{id}}/reviews/" else set()
        assert set(path_item) == {"get"} | writes, path


def test_prediction_filters_are_documented_with_their_types(document: dict[str, Any]) -> None:
    parameters = query_parameters(document, f"{PREFIX}/predictions/")
    documented = {name: parameters[name]["schema"]["type"] for name in PREDICTION_FILTERS}
    assert documented == PREDICTION_FILTERS
    assert parameters["actor_type"]["schema"]["enum"] == [
        "api_key",
        "job",
        "other",
        "service",
        "user",
    ]
    assert parameters["status"]["schema"]["enum"] == ["failed", "partial", "success"]
    for name in ("time_from", "time_to", "has_explanation", "trace_id"):
        assert parameters[name]["description"]


def test_model_filters_are_documented(document: dict[str, Any]) -> None:
    parameters = query_parameters(document, f"{PREFIX}/models/")
    assert {"model_name", "version", "framework"} <= set(parameters)


def test_cursor_pagination_is_documented(document: dict[str, Any]) -> None:
    parameters = query_parameters(document, f"{PREFIX}/predictions/")
    assert {"cursor", "page_size"} <= set(parameters)
    assert "page" not in parameters
    content = document["paths"][f"{PREFIX}/predictions/"]["get"]["responses"]["200"]["content"]
    page = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(document["components"]["schemas"][page]["properties"]) == {
        "next",
        "previous",
        "results",
    }


def test_page_number_pagination_is_documented(client: APIClient, settings: Any) -> None:
    settings.ML_AUDIT = {"API_PAGINATION": "page"}
    parameters = query_parameters(fetch(client), f"{PREFIX}/predictions/")
    assert {"page", "page_size"} <= set(parameters)
    assert "cursor" not in parameters


def test_trace_response_is_the_trace_envelope(document: dict[str, Any]) -> None:
    operation = document["paths"][f"{PREFIX}/traces/{{trace_id}}/"]["get"]
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"trace_id", "trace_url", "count", "truncated", "predictions"}
    (parameter,) = operation["parameters"]
    assert parameter["schema"]["pattern"] == "^[0-9a-fA-F]{32}$"


def test_anonymous_is_refused() -> None:
    response = APIClient().get(schema_url(), HTTP_ACCEPT=JSON)
    assert response.status_code in (401, 403)


def test_needs_the_api_read_permission() -> None:
    api_client = APIClient()
    api_client.force_authenticate(make_user("nobody"))
    assert api_client.get(schema_url(), HTTP_ACCEPT=JSON).status_code == 403


def test_follows_the_configured_api_permissions(settings: Any) -> None:
    settings.ML_AUDIT = {"API_PERMISSION_CLASSES": [AllowAny]}
    assert APIClient().get(schema_url(), HTTP_ACCEPT=JSON).status_code == 200


def test_reading_the_schema_is_not_an_access_to_the_audit_trail(client: APIClient) -> None:
    fetch(client)
    assert not AccessLog.objects.exists()


def test_no_schema_route_without_drf_spectacular(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "drf_spectacular" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    try:
        importlib.reload(ml_audit.api.urls)
        names = {pattern.name for pattern in ml_audit.api.urls.urlpatterns}
    finally:
        monkeypatch.undo()
        importlib.reload(ml_audit.api.urls)
        clear_url_caches()
    assert "prediction-list" in names
    assert "schema" not in names
    assert schema_url() == f"{PREFIX}/schema/"


def test_error_responses_are_documented(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["ApiError"]["required"] == ["detail"]
    assert schemas["QueryParameterErrors"]["additionalProperties"]["type"] == "array"
    for path_item in document["paths"].values():
        responses = path_item["get"]["responses"]
        assert {"200", "400", "401", "403", "404"} <= set(responses)
        body = responses["400"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/QueryParameterErrors"}
        assert responses["404"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ApiError"
        }


def test_documented_400_body_matches_the_api(client: APIClient, document: dict[str, Any]) -> None:
    body = client.get(f"{PREFIX}/predictions/", {"model": "x", "min_confidence": "2"}).json()
    items = document["components"]["schemas"]["QueryParameterErrors"]["additionalProperties"]
    assert items == {"type": "array", "items": {"type": "string"}}
    assert isinstance(body, dict)
    assert all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in body.values())


def test_confidence_bounds_are_documented(document: dict[str, Any]) -> None:
    parameters = query_parameters(document, f"{PREFIX}/predictions/")
    for name in ("min_confidence", "max_confidence"):
        schema = parameters[name]["schema"]
        assert (schema["type"], schema["minimum"], schema["maximum"]) == ("number", 0, 1)
        assert parameters[name]["description"]


def test_every_documented_query_parameter_is_accepted(
    client: APIClient, document: dict[str, Any]
) -> None:
    # What the document offers, the API takes (schemathesis sends only documented ones).
    for path in document["paths"]:
        if "{" in path:  # details take none; a subject's report takes its format
            allowed = {"format"} if path.endswith("/report/") else set()
            assert set(query_parameters(document, path)) == allowed, path
            continue
        for name in query_parameters(document, path):
            response = client.get(path, {name: ""})
            assert response.status_code in (200, 400), (path, name)
            if response.status_code == 400:
                assert "Unknown query parameter" not in str(response.json()), (path, name)


def test_descriptions_have_no_restructuredtext(document: dict[str, Any]) -> None:
    for path_item in document["paths"].values():
        description = path_item["get"]["description"]
        assert description
        assert "``" not in description
        assert ":mod:" not in description


def test_legacy_url_names_and_the_root_are_not_documented_again(document: dict[str, Any]) -> None:
    operation_ids = [item["get"]["operationId"] for item in document["paths"].values()]
    assert len(operation_ids) == len(set(operation_ids)) == len(document["paths"])
    assert not any("ml-audit-" in operation_id for operation_id in operation_ids)
    assert f"{PREFIX}/" not in document["paths"]


def test_page_size_is_documented_as_a_positive_integer(
    client: APIClient, document: dict[str, Any]
) -> None:
    for path in (f"{PREFIX}/predictions/", f"{PREFIX}/models/"):
        schema = query_parameters(document, path)["page_size"]["schema"]
        assert (schema["type"], schema["minimum"]) == ("integer", 1)
        # What the document rules out, the API refuses; what it allows, the API takes.
        assert client.get(path, {"page_size": "0"}).status_code == 400
        assert client.get(path, {"page_size": "1"}).status_code == 200
