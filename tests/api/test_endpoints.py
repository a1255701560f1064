"""The API as a whole: its root and 0.2.0's URL names, unknown query parameters, JSON errors,
405 for writes before authentication, confidence bounds, and readable view descriptions."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import uuid
from collections.abc import Callable
from typing import Any

import django_filters  # type: ignore[import-untyped]
import pytest
from django.contrib.auth.models import User
from django.urls import include, path, resolve, reverse
from rest_framework import compat
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient
from rest_framework.utils import formatting
from rest_framework.versioning import QueryParameterVersioning

import ml_audit.api.urls
from ml_audit.api import filters, pagination, views
from ml_audit.models import AccessLog, PredictionEvent

from .test_api import MODELS, PREDICTIONS, TRACE, detail, make_user, record, trace_detail

pytestmark = pytest.mark.django_db

ROOT = "/api/ml-audit/"
SCHEMA = f"{ROOT}schema/"
HAS_SPECTACULAR = importlib.util.find_spec("drf_spectacular") is not None


def model_detail(pk: object) -> str:
    return reverse("ml_audit_api:model-detail", args=[str(pk)])


@pytest.fixture
def reader() -> User:
    return make_user("reader", "view_predictionevent")


@pytest.fixture
def client(reader: User) -> APIClient:
    api = APIClient()
    api.force_authenticate(reader)
    return api


@pytest.fixture
def event() -> PredictionEvent:
    return record(trace_id=TRACE)


#: Every endpoint of the API, for one recorded prediction.
ENDPOINTS: dict[str, Callable[[PredictionEvent], str]] = {
    "root": lambda e: ROOT,
    "predictions-list": lambda e: PREDICTIONS,
    "predictions-detail": lambda e: detail(e.pk),
    "models-list": lambda e: MODELS,
    "models-detail": lambda e: model_detail(e.model_id),
    "traces-detail": lambda e: trace_detail(e.trace_id),
}
DETAILS = ("root", "predictions-detail", "models-detail", "traces-detail")


def logged() -> AccessLog:
    [row] = AccessLog.objects.all()
    return row


# ----------------------------------------------------------------------------- URL names, root


@pytest.mark.parametrize(
    ("legacy", "ours", "args"),
    [
        ("ml-audit-prediction-list", "prediction-list", []),
        ("ml-audit-prediction-detail", "prediction-detail", [str(uuid.uuid4())]),
        ("ml-audit-model-list", "model-list", []),
        ("ml-audit-model-detail", "model-detail", [str(uuid.uuid4())]),
        ("api-root", "api-root", []),
    ],
)
def test_0_2_0_url_names_reverse_to_our_urls(legacy: str, ours: str, args: list[str]) -> None:
    url = reverse(f"ml_audit_api:{legacy}", args=args)

    assert url == reverse(f"ml_audit_api:{ours}", args=args)
    assert url.startswith(ROOT)
    # A request resolves to our names, whichever name built its URL.
    assert resolve(url).url_name == ours


def test_api_root_is_the_mount_point() -> None:
    assert reverse("ml_audit_api:api-root") == ROOT
    assert resolve(ROOT).url_name == "api-root"


def test_api_root_lists_the_endpoints_as_absolute_urls(
    client: APIClient, event: PredictionEvent
) -> None:
    response = client.get(ROOT)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    expected = {
        "predictions": f"http://testserver{PREDICTIONS}",
        "models": f"http://testserver{MODELS}",
        "traces": f"http://testserver{ROOT}traces/{{trace_id}}/",
        "seals": f"http://testserver{ROOT}seals/",
        "holds": f"http://testserver{ROOT}holds/",
    }
    if HAS_SPECTACULAR:
        expected["schema"] = f"http://testserver{SCHEMA}"
    assert response.json() == expected
    # Each link leads somewhere.
    body = response.json()
    assert client.get(body["predictions"]).json()["results"][0]["id"] == str(event.pk)
    assert client.get(body["models"]).status_code == 200
    assert client.get(body["traces"].format(trace_id=TRACE)).json()["count"] == 1


def test_api_root_keeps_the_format_parameter_in_its_links(client: APIClient) -> None:
    body = client.get(ROOT, {"format": "json"}).json()

    assert body["predictions"] == f"http://testserver{PREDICTIONS}?format=json"
    assert body["traces"] == f"http://testserver{ROOT}traces/{{trace_id}}/?format=json"


@pytest.mark.urls("tests.api.mounts_urls")
def test_api_root_links_to_its_own_mount(client: APIClient) -> None:
    first = client.get("/first/").json()
    second = client.get("/second/audit/").json()

    assert first["predictions"] == "http://testserver/first/predictions/"
    assert second["predictions"] == "http://testserver/second/audit/predictions/"
    assert second["traces"] == "http://testserver/second/audit/traces/{trace_id}/"


def test_api_root_lists_no_schema_without_drf_spectacular(
    client: APIClient, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "drf_spectacular" else real_find_spec(name, package)

    # ml_audit.api.urls as it is built without drf-spectacular, mounted by a URLconf of its own.
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    try:
        importlib.reload(ml_audit.api.urls)
        patterns = list(ml_audit.api.urls.urlpatterns)
    finally:
        monkeypatch.undo()
        importlib.reload(ml_audit.api.urls)
    assert "schema" not in {pattern.name for pattern in patterns}
    urlconf = types.ModuleType("ml_audit_test_no_schema_urls")
    urlconf.urlpatterns = [path("api/ml-audit/", include((patterns, "ml_audit_api")))]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, urlconf.__name__, urlconf)
    settings.ROOT_URLCONF = urlconf.__name__

    body = client.get(ROOT).json()

    assert body == {
        "predictions": f"http://testserver{PREDICTIONS}",
        "models": f"http://testserver{MODELS}",
        "traces": f"http://testserver{ROOT}traces/{{trace_id}}/",
        "seals": f"http://testserver{ROOT}seals/",
        "holds": f"http://testserver{ROOT}holds/",
    }


def test_api_root_takes_the_api_permissions_not_drfs_defaults(settings: Any) -> None:
    # A project-wide AllowAny does not open the root...
    settings.REST_FRAMEWORK = {
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"]
    }
    assert APIClient().get(ROOT).status_code in (401, 403)
    nobody = APIClient()
    nobody.force_authenticate(make_user("nobody", "view_modelversion"))
    assert nobody.get(ROOT).status_code == 403

    # ...ML_AUDIT['API_PERMISSION_CLASSES'] does.
    settings.REST_FRAMEWORK = {}
    settings.ML_AUDIT = {"API_PERMISSION_CLASSES": [AllowAny]}
    assert APIClient().get(ROOT).status_code == 200


def test_api_root_is_access_logged(client: APIClient, reader: User) -> None:
    assert client.get(ROOT).status_code == 200
    assert APIClient().get(ROOT).status_code in (401, 403)

    read, refused = AccessLog.objects.order_by("accessed_at", "id")
    assert (read.endpoint, read.username, read.status_code) == ("api-root", "reader", 200)
    assert (read.path, read.returned_ids, read.result_count) == (ROOT, [], 0)
    assert (refused.endpoint, refused.user_id, refused.returned_ids) == ("api-root", "", [])
    assert refused.status_code in (401, 403)


# ----------------------------------------------------------------------------- query parameters


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unknown_query_parameters_are_a_400_naming_them(
    client: APIClient, event: PredictionEvent, endpoint: str
) -> None:
    response = client.get(ENDPOINTS[endpoint](event), {"model": "x", "date": "y"})

    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"model", "date"}
    assert all("Unknown query parameter" in body[name][0] for name in body)
    row = logged()
    assert (row.status_code, row.returned_ids, row.query["model"]) == (400, [], ["x"])


def test_unknown_parameter_message_lists_what_the_endpoint_accepts(client: APIClient) -> None:
    listing = client.get(PREDICTIONS, {"model": "fraud"}).json()["model"][0]
    one = client.get(detail(uuid.uuid4()), {"model_name": "fraud"}).json()["model_name"][0]

    for name in ("model_name", "cursor", "format"):
        assert name in listing
    assert one.endswith("This endpoint accepts: format.")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_format_is_accepted_everywhere(
    client: APIClient, event: PredictionEvent, endpoint: str
) -> None:
    response = client.get(ENDPOINTS[endpoint](event), {"format": "json"})

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("endpoint", DETAILS)
def test_details_take_no_filter_or_pagination_parameter(
    client: APIClient, event: PredictionEvent, endpoint: str
) -> None:
    for name, value in (("model_name", "fraud"), ("page_size", "1"), ("cursor", "x")):
        response = client.get(ENDPOINTS[endpoint](event), {name: value})
        assert response.status_code == 400, (name, response.content)
        assert list(response.json()) == [name]


def test_every_filter_and_the_cursor_parameters_are_accepted(client: APIClient) -> None:
    record()
    documented = set(filters.PredictionEventFilterSet.base_filters) | {"cursor", "page_size"}
    for name in documented:
        response = client.get(PREDICTIONS, {name: ""})
        assert response.status_code != 400 or name not in response.json(), name
    for name in ("model_name", "version", "framework", "cursor", "page_size"):
        assert client.get(MODELS, {name: ""}).status_code == 200, name


def test_pagination_parameters_follow_the_pagination_mode(client: APIClient, settings: Any) -> None:
    record()
    assert client.get(PREDICTIONS, {"page_size": "1"}).status_code == 200
    assert list(client.get(PREDICTIONS, {"page": "1"}).json()) == ["page"]

    settings.ML_AUDIT = {"API_PAGINATION": "page"}
    assert client.get(PREDICTIONS, {"page": "1", "page_size": "1"}).status_code == 200
    assert client.get(MODELS, {"page": "1"}).status_code == 200
    assert list(client.get(PREDICTIONS, {"cursor": "x"}).json()) == ["cursor"]


def test_query_parameter_versioning_keeps_its_parameter(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    record()
    monkeypatch.setattr(views.PredictionEventViewSet, "versioning_class", QueryParameterVersioning)

    assert client.get(PREDICTIONS, {"version": "1"}).status_code == 200
    assert list(client.get(MODELS, {"version": "1", "x": "1"}).json()) == ["x"]


def test_parameters_are_checked_after_permissions(event: PredictionEvent) -> None:
    assert APIClient().get(PREDICTIONS, {"model": "x"}).status_code in (401, 403)
    nobody = APIClient()
    nobody.force_authenticate(make_user("nobody"))
    assert nobody.get(PREDICTIONS, {"model": "x"}).status_code == 403


def test_unknown_parameters_come_before_bad_values(client: APIClient) -> None:
    response = client.get(PREDICTIONS, {"min_confidence": "abc", "date": "y"})

    assert response.status_code == 400
    assert list(response.json()) == ["date"]


def test_parameter_names_of_multi_part_filters() -> None:
    class WithRange(django_filters.FilterSet):  # type: ignore[misc]
        confidence = django_filters.RangeFilter()
        timestamp = django_filters.DateFromToRangeFilter()
        status = django_filters.CharFilter()

        class Meta:
            model = PredictionEvent
            fields: list[str] = []

    assert filters.parameter_names(WithRange) == {
        "confidence_min",
        "confidence_max",
        "timestamp_after",
        "timestamp_before",
        "status",
    }
    assert filters.parameter_names(filters.ModelVersionFilterSet) == {
        "model_name",
        "version",
        "framework",
    }


def test_pagination_query_parameters() -> None:
    cursor = pagination.AuditCursorPagination()
    page = pagination.AuditPageNumberPagination()

    assert pagination.query_parameters(cursor) == {"cursor", "page_size"}
    assert pagination.query_parameters(page) == {"page", "page_size"}
    assert pagination.query_parameters(None) == frozenset()


# ----------------------------------------------------------------------------- JSON 404s


@pytest.mark.parametrize(
    "url",
    [
        f"{PREDICTIONS}not-a-uuid/",
        f"{PREDICTIONS}{uuid.UUID(int=0)}/extra/",
        f"{MODELS}abc/",
        f"{MODELS}99999999999999999999999/",
        f"{ROOT}traces/",
        f"{ROOT}traces/zzz/",
        f"{ROOT}traces/{'a' * 31}/",
        f"{ROOT}nothing/",
        f"{ROOT}nothing/here/",
    ],
)
def test_paths_that_name_no_endpoint_are_json_404s(client: APIClient, url: str) -> None:
    response = client.get(url)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "No API endpoint matches this path."}
    assert "Allow" not in response
    row = logged()
    assert (row.endpoint, row.status_code, row.username) == ("not-found", 404, "reader")


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options", "head"])
def test_unknown_paths_are_404_for_every_method_and_everyone(method: str) -> None:
    anonymous = getattr(APIClient(), method)(f"{PREDICTIONS}not-a-uuid/")

    assert anonymous.status_code == 404
    assert logged().user_id == ""


def test_unknown_path_under_a_browser_session_is_not_a_csrf_failure(reader: User) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(reader)

    assert browser.post(f"{ROOT}nothing/", {}).status_code == 404


def test_json_404_for_missing_objects(client: APIClient) -> None:
    for url in (detail(uuid.uuid4()), model_detail(uuid.uuid4()), trace_detail("e" * 32)):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"] == "application/json"
        assert set(response.json()) == {"detail"}


def test_model_detail_is_read_by_uuid(client: APIClient, event: PredictionEvent) -> None:
    body = client.get(model_detail(event.model_id)).json()

    assert body["id"] == str(event.model_id)
    assert body["model_name"] == "fraud"
    assert model_detail(event.model_id) == f"{MODELS}{event.model_id}/"


def test_the_catch_all_is_no_breadcrumb_of_the_browsable_api() -> None:
    # DRF's breadcrumbs list every DRF view a prefix of the URL resolves to.
    match = resolve(f"{ROOT}traces/")
    assert match.url_name == "not-found"
    assert not hasattr(match.func, "cls")


def test_paths_without_the_trailing_slash_are_left_to_django(client: APIClient) -> None:
    # APPEND_SLASH (CommonMiddleware) redirects them to the slashed path, which is a JSON 404.
    assert client.get(f"{ROOT}nothing").status_code == 404
    assert not AccessLog.objects.exists()


# ----------------------------------------------------------------------------- 405


WRITES = ["post", "put", "patch", "delete"]


def _users() -> dict[str, APIClient]:
    anonymous = APIClient()
    unprivileged = APIClient()
    unprivileged.force_authenticate(make_user("nobody", "view_modelversion"))
    granted = APIClient()
    granted.force_authenticate(make_user("granted", "view_predictionevent"))
    return {"anonymous": anonymous, "unprivileged": unprivileged, "granted": granted}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_writes_are_405_for_everyone_on_every_endpoint(
    event: PredictionEvent, endpoint: str
) -> None:
    url = ENDPOINTS[endpoint](event)
    for who, api in _users().items():
        for method in WRITES:
            response = getattr(api, method)(url, {"x": 1}, format="json")
            assert response.status_code == 405, (who, method, response.content)
            assert response["Allow"] == "GET, HEAD, OPTIONS"
            assert response.json() == {"detail": f'Method "{method.upper()}" not allowed.'}
    assert PredictionEvent.objects.count() == 1
    rows = AccessLog.objects.all()
    assert len(rows) == 3 * len(WRITES)
    assert {(row.status_code, str(row.returned_ids)) for row in rows} == {(405, "[]")}
    assert {row.username for row in rows} == {"", "nobody", "granted"}
    assert {row.method for row in rows} == {method.upper() for method in WRITES}


def test_write_methods_are_refused_before_authentication(reader: User) -> None:
    # A logged-in browser without a CSRF token: 405, not SessionAuthentication's CSRF 403.
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(reader)

    assert browser.post(PREDICTIONS, {}).status_code == 405
    assert browser.get(PREDICTIONS).status_code == 200


@pytest.mark.skipif(not HAS_SPECTACULAR, reason="drf-spectacular is not installed")
def test_writes_to_the_schema_are_405_too() -> None:
    for who, api in _users().items():
        response = api.post(SCHEMA, {})
        assert response.status_code == 405, who
        assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert not AccessLog.objects.exists()  # reading the schema is not logged, nor are these


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_head_and_options_stay_allowed(
    client: APIClient, event: PredictionEvent, endpoint: str
) -> None:
    url = ENDPOINTS[endpoint](event)

    assert client.head(url).status_code == 200
    options = client.options(url)
    assert options.status_code == 200
    assert "``" not in options.json()["description"]


# ----------------------------------------------------------------------------- confidence


@pytest.mark.parametrize("name", ["min_confidence", "max_confidence"])
@pytest.mark.parametrize("value", ["2", "-0.5", "1.0000001", "-1e-9"])
def test_confidence_bounds_outside_0_1_are_a_400(client: APIClient, name: str, value: str) -> None:
    record()

    response = client.get(PREDICTIONS, {name: value})

    assert response.status_code == 400, response.content
    assert list(response.json()) == [name]


@pytest.mark.parametrize("value", ["0", "1", "0.0", "1.0", "-0"])
def test_confidence_bounds_0_and_1_are_valid(client: APIClient, value: str) -> None:
    record(confidence=0.5)

    assert client.get(PREDICTIONS, {"min_confidence": value}).status_code == 200
    assert client.get(PREDICTIONS, {"max_confidence": value}).status_code == 200


# ----------------------------------------------------------------------------- descriptions


RST_MARKUP = ("``", ":func:", ":mod:", ":class:", ":data:", ":meth:", ":attr:")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_browsable_api_descriptions_show_no_restructuredtext(
    client: APIClient, event: PredictionEvent, endpoint: str
) -> None:
    for response in (
        client.get(ENDPOINTS[endpoint](event), {"format": "api"}),
        client.get(ENDPOINTS[endpoint](event), HTTP_ACCEPT="text/html"),
    ):
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        page = response.content.decode()
        assert not [markup for markup in RST_MARKUP if markup in page]


def test_browsable_api_shows_the_description_text(client: APIClient) -> None:
    page = client.get(PREDICTIONS, {"format": "api"}).content.decode()

    assert "Recorded predictions, newest first (<code>GET predictions/</code>)" in page
    assert "<code>model_name</code>" in page


def test_plain_description_drops_roles_and_double_backquotes() -> None:
    text = """
        Read by :func:`ml_audit.store.read`, shaped by :class:`~.serializers.Thing` and
        :mod:`.filters`; see :ref:`the guide <guide-label>` and :py:meth:`Foo.bar`.

        ``GET x/`` returns ``{"a": 1}``::

            example
    """

    described = views.plain_description(text)

    assert described == (
        "Read by `ml_audit.store.read`, shaped by `Thing` and `filters`; see the guide and "
        "`Foo.bar`.\n\n"
        '`GET x/` returns `{"a": 1}`:\n\n'
        "    example"
    )
    assert views.description_html(described) == (
        "<p>Read by <code>ml_audit.store.read</code>, shaped by <code>Thing</code> and "
        "<code>filters</code>; see the guide and <code>Foo.bar</code>.</p>"
        "<p><code>GET x/</code> returns <code>{&quot;a&quot;: 1}</code>:</p>"
        "<pre><code>    example</code></pre>"
    )


def test_lists_keep_their_lines() -> None:
    described = views.plain_description("Items:\n\n- ``one``\n- two\n")

    assert described == "Items:\n\n- `one`\n- two"
    assert views.description_html(described) == (
        "<p>Items:</p><p>- <code>one</code><br />- two</p>"
    )


def test_markdown_renders_the_description_when_drf_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered: list[str] = []

    def apply_markdown(text: str) -> str:
        rendered.append(text)
        return "<p>markdown</p>"

    monkeypatch.setattr(compat, "apply_markdown", apply_markdown)
    monkeypatch.setattr(formatting, "apply_markdown", apply_markdown)

    assert views.description_html("`x` y") == "<p>markdown</p>"
    assert rendered == ["`x` y"]


def test_project_view_description_function_does_not_bring_the_markup_back(
    client: APIClient, settings: Any
) -> None:
    settings.REST_FRAMEWORK = {
        "VIEW_DESCRIPTION_FUNCTION": "rest_framework.views.get_view_description"
    }
    description = client.options(PREDICTIONS).json()["description"]

    assert description.startswith("Recorded predictions, newest first (`GET predictions/`)")
    assert "``" not in description
