"""The read-only REST API: endpoints, filters, validation, permissions, tenants, pagination."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

from ml_audit.api.permissions import CanViewPredictions, configured_permission_classes
from ml_audit.checks import check_settings
from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError
from ml_audit.models import PredictionEvent
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event

pytestmark = pytest.mark.django_db

PREDICTIONS = reverse("ml_audit_api:prediction-list")
MODELS = reverse("ml_audit_api:model-list")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = dt.datetime(2026, 3, 3, 10, 0, tzinfo=dt.UTC)


def detail(pk: object) -> str:
    return reverse("ml_audit_api:prediction-detail", args=[str(pk)])


def trace_detail(trace_id: str) -> str:
    return reverse("ml_audit_api:trace-detail", args=[trace_id])


def record(**overrides: Any) -> PredictionEvent:
    kwargs: dict[str, Any] = {
        "model_name": "fraud",
        "model_version": "1",
        "features": {"amount": 10, "email": "a@example.com"},
        "output": {"score": 0.5},
        "decision_outcome": "clean",
        "confidence": 0.5,
        "actor": ActorPayload(
            "user",
            "7",
            tenant_id="acme",
            ip_address="203.0.113.9",
            user_agent="curl/8.0",
            auth_context={"scope": "read"},
        ),
        "environment": "prod",
        "timestamp": T0,
    }
    kwargs.update(overrides)
    return record_prediction_event(**kwargs)


def make_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    # A fresh instance: the permission cache of the old one is stale.
    return User.objects.get(pk=user.pk)


@pytest.fixture
def reader() -> User:
    return make_user("reader", "view_predictionevent")


@pytest.fixture
def auditor() -> User:
    return make_user("auditor", "view_predictionevent", "view_requestingactor")


@pytest.fixture
def client(reader: User) -> APIClient:
    api = APIClient()
    api.force_authenticate(reader)
    return api


@pytest.fixture
def tenant_scoping(settings: Any) -> None:
    """Users carry ``allowed_tenants`` (a test attribute); no attribute means every tenant."""

    def resolver(request: Any) -> Any:
        return getattr(request.user, "allowed_tenants", None)

    settings.ML_AUDIT = {"API_TENANT_RESOLVER": resolver}


def ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["prediction_id"] for row in response.json()["results"]}


# ----------------------------------------------------------------------------- shapes


def test_list_nests_model_actor_and_current_explanation(client: APIClient) -> None:
    event = record(prediction_id="p1", trace_id=TRACE)
    attach_explanation(event, "shap", {"amount": 0.1}, "first")
    attach_explanation(event, "shap", {"amount": 0.2}, "second", method_version="0.45")

    body = client.get(PREDICTIONS).json()

    assert body["next"] is None
    [row] = body["results"]
    assert row["id"] == str(event.pk)
    assert row["prediction_id"] == "p1"
    assert row["model"] == {"model_name": "fraud", "version": "1", "framework": ""}
    assert row["actor"] == {"type": "user", "id": "7", "tenant": "acme"}
    assert row["tenant_id"] == "acme"
    assert row["features"] == {"amount": 10, "email": "*****"}
    assert row["trace_id"] == TRACE
    assert row["explanation"]["summary_text"] == "second"
    assert row["explanation"]["revision"] == 2
    assert row["explanation"]["method_version"] == "0.45"
    assert row["explanation"]["payload"] == {"amount": 0.2}
    assert set(row["explanation"]) == {
        "method",
        "method_version",
        "payload",
        "summary_text",
        "status",
        "generated_at",
        "revision",
        "reason_codes",
    }
    assert row["explanation"]["reason_codes"] is None
    assert row["explanation_revisions"] == 2
    assert row["trace_url"] is None
    assert row["content_hash"] == event.content_hash
    assert row["input_fingerprint"] == event.input_fingerprint
    for name in ("client_ip", "user_agent", "auth_context"):
        assert name not in row


def test_detail_returns_one_prediction(client: APIClient) -> None:
    event = record(actor=None)
    record(prediction_id="other")

    response = client.get(detail(event.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(event.pk)
    assert body["actor"] is None
    assert body["explanation"] is None
    assert body["explanation_revisions"] == 0


def test_detail_unknown_or_malformed_uuid_is_404(client: APIClient) -> None:
    for url in (detail(uuid.uuid4()), f"{PREDICTIONS}not-a-uuid/", f"{PREDICTIONS}{'0' * 31}g/"):
        response = client.get(url)
        assert response.status_code == 404
        assert set(response.json()) == {"detail"}  # JSON, not Django's HTML page


def test_request_context_needs_the_second_permission(auditor: User) -> None:
    event = record()
    api = APIClient()
    api.force_authenticate(auditor)

    row = api.get(detail(event.pk)).json()
    listed = api.get(PREDICTIONS).json()["results"][0]

    for shown in (row, listed):
        assert shown["client_ip"] == "203.0.113.9"
        assert shown["user_agent"] == "curl/8.0"
        assert shown["auth_context"] == {"scope": "read"}


def test_trace_url_is_built_from_the_template(client: APIClient, settings: Any) -> None:
    settings.ML_AUDIT = {"TRACE_URL_TEMPLATE": "http://127.0.0.1:6006/redirects/traces/{trace_id}"}
    event = record(trace_id=TRACE)

    row = client.get(detail(event.pk)).json()

    assert row["trace_url"] == f"http://127.0.0.1:6006/redirects/traces/{TRACE}"


def test_models_endpoint_lists_model_versions(client: APIClient) -> None:
    record(model_name="fraud", model_version="1")
    record(model_name="fraud", model_version="2", prediction_id="b")
    record(model_name="churn", model_version="1", prediction_id="c")

    body = client.get(MODELS).json()
    filtered = client.get(MODELS, {"model_name": "fraud"}).json()

    assert [(m["model_name"], m["version"]) for m in body["results"]] == [
        ("churn", "1"),
        ("fraud", "1"),
        ("fraud", "2"),
    ]
    assert [m["version"] for m in filtered["results"]] == ["1", "2"]


def test_trace_endpoint_returns_every_prediction_of_the_trace(
    client: APIClient, settings: Any
) -> None:
    settings.ML_AUDIT = {"TRACE_URL_TEMPLATE": "https://apm.example/t/{trace_id}"}
    second = record(prediction_id="second", trace_id=TRACE, timestamp=T0 + dt.timedelta(1))
    first = record(prediction_id="first", trace_id=TRACE)
    attach_explanation(first, "reason_codes", {"codes": ["R1"]})
    record(prediction_id="elsewhere", trace_id="f" * 32)

    response = client.get(trace_detail(TRACE.upper()))

    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == TRACE
    assert body["trace_url"] == f"https://apm.example/t/{TRACE}"
    assert body["count"] == 2
    assert body["truncated"] is False
    assert [p["prediction_id"] for p in body["predictions"]] == ["first", "second"]
    assert body["predictions"][0]["explanation"]["method"] == "reason_codes"
    assert body["predictions"][1]["id"] == str(second.pk)


def test_trace_endpoint_unknown_or_malformed_trace_is_404(client: APIClient) -> None:
    assert client.get(trace_detail("a" * 32)).status_code == 404
    assert client.get("/api/ml-audit/traces/not-a-trace/").status_code == 404


def test_trace_endpoint_truncates_at_the_max_page_size(client: APIClient, settings: Any) -> None:
    settings.ML_AUDIT = {"API_MAX_PAGE_SIZE": 2}
    for n in range(3):
        record(prediction_id=f"p{n}", trace_id=TRACE, timestamp=T0 + dt.timedelta(seconds=n))

    body = client.get(trace_detail(TRACE)).json()

    assert body["truncated"] is True
    assert [p["prediction_id"] for p in body["predictions"]] == ["p0", "p1"]


# ----------------------------------------------------------------------------- filters


@pytest.fixture
def population() -> dict[str, PredictionEvent]:
    """Predictions differing in one attribute each from ``base``."""
    rows = {
        "base": record(prediction_id="base", trace_id=TRACE),
        "model2": record(prediction_id="model2", model_name="churn", model_version="2"),
        "service": record(
            prediction_id="service",
            actor=ActorPayload("service", "batch", tenant_id="globex"),
            timestamp=T0 + dt.timedelta(days=2),
        ),
        "flagged": record(
            prediction_id="flagged",
            decision_outcome="flagged",
            confidence=0.95,
            environment="staging",
            trace_id="req-123",
            timestamp=T0 - dt.timedelta(days=2),
        ),
        "failed": record(
            prediction_id="failed",
            status="failed",
            error_type="ValueError",
            confidence=0.05,
            output=None,
        ),
    }
    attach_explanation(rows["base"], "shap", {"amount": 1.0})
    return rows


FILTER_CASES: list[tuple[dict[str, str], set[str]]] = [
    ({"model_name": "churn"}, {"model2"}),
    ({"model_name": "nope"}, set()),
    ({"model_version": "2"}, {"model2"}),
    ({"model_version": "9"}, set()),
    ({"actor_type": "service"}, {"service"}),
    ({"actor_type": "job"}, set()),
    ({"actor_id": "batch"}, {"service"}),
    ({"actor_id": "nobody"}, set()),
    ({"tenant_id": "globex"}, {"service"}),
    ({"tenant_id": "initech"}, set()),
    ({"time_from": "2026-03-04"}, {"service"}),
    ({"time_from": "2026-03-06"}, set()),
    ({"time_to": "2026-03-01"}, {"flagged"}),
    ({"time_to": "2026-02-28"}, set()),
    (
        {"time_from": "2026-03-03T10:00:00Z", "time_to": "2026-03-03T10:00:00+00:00"},
        {"base", "model2", "failed"},
    ),
    ({"time_from": "2026-03-03T10:00:01"}, {"service"}),
    (
        {"time_from": "2026-03-03T11:00:00+01:00", "time_to": "2026-03-03T12:00:00 02:00"},
        {"base", "model2", "failed"},
    ),
    ({"time_to": "2026-03-03T10:59:59+01:00"}, {"flagged"}),
    ({"decision_outcome": "flagged"}, {"flagged"}),
    ({"decision_outcome": "approved"}, set()),
    ({"environment": "staging"}, {"flagged"}),
    ({"environment": "dev"}, set()),
    ({"has_explanation": "true"}, {"base"}),
    ({"has_explanation": "false"}, {"model2", "service", "flagged", "failed"}),
    ({"status": "failed"}, {"failed"}),
    ({"status": "partial"}, set()),
    ({"min_confidence": "0.9"}, {"flagged"}),
    ({"min_confidence": "0.99"}, set()),
    ({"max_confidence": "0.1"}, {"failed"}),
    ({"max_confidence": "0.01"}, set()),
    ({"min_confidence": "0.4", "max_confidence": "0.6"}, {"base", "model2", "service"}),
    ({"trace_id": TRACE.upper()}, {"base"}),
    ({"trace_id": "req-123"}, {"flagged"}),
    ({"trace_id": "e" * 32}, set()),
    ({"prediction_id": "failed"}, {"failed"}),
    ({"prediction_id": "missing"}, set()),
]


@pytest.mark.parametrize(("params", "expected"), FILTER_CASES)
def test_filters(
    client: APIClient,
    population: dict[str, PredictionEvent],
    params: dict[str, str],
    expected: set[str],
) -> None:
    assert ids(client.get(PREDICTIONS, params)) == expected


def test_no_filter_lists_everything(
    client: APIClient, population: dict[str, PredictionEvent]
) -> None:
    assert ids(client.get(PREDICTIONS)) == set(population)


INVALID_CASES = [
    ("min_confidence", "abc"),
    ("max_confidence", "NaN"),
    ("time_from", "garbage"),
    ("time_to", "2026-13-01"),
    ("has_explanation", "maybe"),
    ("status", "bogus"),
    ("actor_type", "robot"),
    ("trace_id", "x" * 300),
    ("max_confidence", "1e400"),
    ("time_from", "0001-01-01T00:00:00+01:00"),
    ("time_to", "9999-12-31T23:59:59-01:00"),
    ("page_size", "abc"),
    ("page_size", "0"),
    *((name, "a\x00b") for name in ("model_name", "actor_id", "tenant_id", "trace_id")),
    *((name, "a\x00b") for name in ("prediction_id", "decision_outcome", "environment")),
]


@pytest.mark.parametrize(("param", "value"), INVALID_CASES)
def test_invalid_values_are_400_naming_the_parameter(
    client: APIClient, param: str, value: str
) -> None:
    record()

    response = client.get(PREDICTIONS, {param: value})

    assert response.status_code == 400, response.content
    assert param in response.json()


def test_extreme_dates_are_valid_bounds(client: APIClient) -> None:
    record()

    assert len(ids(client.get(PREDICTIONS, {"time_from": "0001-01-01"}))) == 1
    assert len(ids(client.get(PREDICTIONS, {"time_to": "9999-12-31"}))) == 1
    assert ids(client.get(PREDICTIONS, {"time_from": "9999-12-31"})) == set()


def test_models_endpoint_rejects_bad_input(client: APIClient) -> None:
    record()

    assert client.get(MODELS, {"model_name": "a\x00b"}).status_code == 400
    # Model versions have UUID primary keys: integers and other garbage are no id.
    assert client.get(f"{MODELS}99999999999999999999999/").status_code == 404
    assert client.get(f"{MODELS}1/").status_code == 404
    assert client.get(f"{MODELS}abc/").status_code == 404
    assert client.get(f"{MODELS}{uuid.uuid4()}/").status_code == 404


# ----------------------------------------------------------------------------- permissions


ENDPOINTS: list[Callable[[PredictionEvent], str]] = [
    lambda e: PREDICTIONS,
    lambda e: detail(e.pk),
    lambda e: MODELS,
    lambda e: reverse("ml_audit_api:model-detail", args=[str(e.model_id)]),
    lambda e: trace_detail(e.trace_id),
    lambda e: reverse("ml_audit_api:api-root"),
]


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_is_refused(url: Callable[[PredictionEvent], str]) -> None:
    event = record()

    response = APIClient().get(url(event))

    assert response.status_code in (401, 403)


@pytest.mark.parametrize("url", ENDPOINTS)
def test_read_permission_is_required(url: Callable[[PredictionEvent], str]) -> None:
    event = record()
    api = APIClient()
    api.force_authenticate(make_user("nobody", "view_modelversion"))

    assert api.get(url(event)).status_code == 403


@pytest.mark.parametrize("url", ENDPOINTS)
def test_granted_user_reads_every_endpoint(
    client: APIClient, url: Callable[[PredictionEvent], str]
) -> None:
    event = record()

    assert client.get(url(event)).status_code == 200


def test_writes_are_not_allowed(client: APIClient) -> None:
    event = record()

    assert client.post(PREDICTIONS, {}).status_code == 405
    assert client.delete(detail(event.pk)).status_code == 405
    assert PredictionEvent.objects.count() == 1


def test_permission_classes_are_configurable(settings: Any) -> None:
    settings.ML_AUDIT = {"API_PERMISSION_CLASSES": [AllowAny]}
    record()
    response = APIClient().get(PREDICTIONS)

    assert response.status_code == 200
    assert "client_ip" not in response.json()["results"][0]


# ----------------------------------------------------------------------------- tenants


@pytest.mark.usefixtures("tenant_scoping")
def test_tenant_scoping_applies_to_list_detail_models_and_traces(reader: User) -> None:
    mine = record(prediction_id="mine", trace_id=TRACE)
    theirs = record(
        prediction_id="theirs",
        model_name="secret",
        trace_id="c" * 32,
        actor=ActorPayload("user", "9", tenant_id="globex"),
    )
    untenanted = record(prediction_id="none", actor=None)
    reader.allowed_tenants = ["acme"]  # type: ignore[attr-defined]
    api = APIClient()
    api.force_authenticate(reader)

    assert ids(api.get(PREDICTIONS)) == {"mine"}
    assert ids(api.get(PREDICTIONS, {"tenant_id": "globex"})) == set()
    assert api.get(detail(mine.pk)).status_code == 200
    assert api.get(detail(theirs.pk)).status_code == 404
    assert api.get(detail(untenanted.pk)).status_code == 404
    assert api.get(trace_detail(TRACE)).status_code == 200
    assert api.get(trace_detail(theirs.trace_id)).status_code == 404
    assert [m["model_name"] for m in api.get(MODELS).json()["results"]] == ["fraud"]

    reader.allowed_tenants = "globex"  # type: ignore[attr-defined]
    assert ids(api.get(PREDICTIONS)) == {"theirs"}

    reader.allowed_tenants = []  # type: ignore[attr-defined]
    assert ids(api.get(PREDICTIONS)) == set()
    assert api.get(MODELS).json()["results"] == []

    del reader.allowed_tenants  # type: ignore[attr-defined]
    assert ids(api.get(PREDICTIONS)) == {"mine", "theirs", "none"}


# ----------------------------------------------------------------------------- pagination


def walk(api: APIClient, url: str, params: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    response = api.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        seen.extend(row["prediction_id"] for row in body["results"])
        if not body["next"]:
            return seen
        response = api.get(body["next"])


def test_cursor_pagination_walks_every_row_once_newest_first(client: APIClient) -> None:
    # Ties on timestamp must neither repeat nor skip rows across page boundaries.
    stamps = [T0, T0, T0, T0 + dt.timedelta(seconds=1), T0 - dt.timedelta(seconds=1)]
    stamps += [T0 + dt.timedelta(seconds=1), T0, T0 - dt.timedelta(hours=1)]
    for n, stamp in enumerate(stamps):
        record(prediction_id=f"p{n}", timestamp=stamp)
    expected = list(
        PredictionEvent.objects.order_by("-timestamp", "-id").values_list(
            "prediction_id", flat=True
        )
    )

    for size in (1, 2, 3, 8, 50):
        assert walk(client, PREDICTIONS, {"page_size": size}) == expected

    assert "count" not in client.get(PREDICTIONS).json()


def test_cursor_pagination_keeps_filters_across_pages(client: APIClient) -> None:
    for n in range(5):
        record(prediction_id=f"p{n}", status="failed" if n % 2 else "success")

    assert sorted(walk(client, PREDICTIONS, {"status": "success", "page_size": 1})) == [
        "p0",
        "p2",
        "p4",
    ]


def test_invalid_cursor_is_a_400_naming_it(client: APIClient) -> None:
    response = client.get(PREDICTIONS, {"cursor": "garbage"})
    assert response.status_code == 400
    assert list(response.json()) == ["cursor"]


def test_page_size_is_capped(client: APIClient, settings: Any) -> None:
    settings.ML_AUDIT = {"API_MAX_PAGE_SIZE": 3}
    for n in range(5):
        record(prediction_id=f"p{n}")

    body = client.get(PREDICTIONS, {"page_size": 1000}).json()

    assert len(body["results"]) == 3
    assert body["next"]
    assert len(client.get(PREDICTIONS, {"page_size": 2}).json()["results"]) == 2


def test_default_page_size_never_exceeds_the_cap(client: APIClient, settings: Any) -> None:
    settings.ML_AUDIT = {"API_MAX_PAGE_SIZE": 2}
    for n in range(3):
        record(prediction_id=f"p{n}")

    assert len(client.get(PREDICTIONS).json()["results"]) == 2


def test_page_number_mode(client: APIClient, settings: Any) -> None:
    settings.ML_AUDIT = {"API_PAGINATION": "page"}
    for n in range(5):
        record(prediction_id=f"p{n}", timestamp=T0 + dt.timedelta(seconds=n))

    first = client.get(PREDICTIONS, {"page_size": 2}).json()
    third = client.get(PREDICTIONS, {"page_size": 2, "page": 3}).json()

    assert first["count"] == 5
    assert [r["prediction_id"] for r in first["results"]] == ["p4", "p3"]
    assert "page=2" in first["next"]
    assert [r["prediction_id"] for r in third["results"]] == ["p0"]
    assert third["next"] is None
    assert client.get(PREDICTIONS, {"page": 9}).status_code == 404


# ----------------------------------------------------------------------------- query count


@pytest.mark.parametrize("mode", ["cursor", "page"])
@pytest.mark.parametrize("page_size", [1, 50])
def test_list_and_detail_take_at_most_three_queries_plus_the_access_log(
    settings: Any,
    auditor: User,
    mode: str,
    page_size: int,
) -> None:
    settings.ML_AUDIT = {"API_PAGINATION": mode}
    events = [
        record(
            prediction_id=f"p{n}",
            model_name=f"m{n % 3}",
            actor=ActorPayload("user", str(n % 4), tenant_id="acme"),
            timestamp=T0 + dt.timedelta(seconds=n),
        )
        for n in range(60)
    ]
    for event in events[::2]:
        attach_explanation(event, "shap", {"x": 1})
        attach_explanation(event, "shap", {"x": 2})
    api = APIClient()
    api.force_authenticate(auditor)
    # Permission look-ups are the auth backend's (cached per user object), not the API's.
    assert auditor.has_perm("ml_audit.view_predictionevent")

    params: dict[str, Any] = {"page_size": page_size, "has_explanation": "true"}
    with CaptureQueriesContext(connection) as listing:
        response = api.get(PREDICTIONS, params)
    with CaptureQueriesContext(connection) as one:
        single = api.get(detail(events[0].pk))

    # At most three queries for the data, plus exactly one INSERT into the access log.
    for captured in (listing, one):
        sql = [query["sql"] for query in captured.captured_queries]
        log_inserts = [q for q in sql if q.startswith('INSERT INTO "ml_audit_accesslog"')]
        assert len(log_inserts) == 1, sql
        assert len(sql) - len(log_inserts) <= 3, sql

    rows = response.json()["results"]
    assert len(rows) == min(page_size, 30)
    assert all(row["explanation_revisions"] == 2 for row in rows)
    assert single.json()["explanation"]["payload"] == {"x": 2}


# ----------------------------------------------------------------------------- settings


@pytest.mark.django_db(databases=["default", "audit"])
def test_every_read_uses_the_audit_alias(client: APIClient, settings: Any) -> None:
    settings.ML_AUDIT = {"DATABASE_ALIAS": "audit"}
    event = record(trace_id=TRACE)
    attach_explanation(event, "shap", {"x": 1})
    assert not PredictionEvent.objects.using("default").exists()

    assert ids(client.get(PREDICTIONS, {"has_explanation": "true"})) == {event.prediction_id}
    assert client.get(detail(event.pk)).json()["explanation_revisions"] == 1
    assert client.get(trace_detail(TRACE)).json()["count"] == 1
    assert [m["model_name"] for m in client.get(MODELS).json()["results"]] == ["fraud"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("TRACE_URL_TEMPLATE", "http://apm/traces/"),
        ("TRACE_URL_TEMPLATE", "http://apm/{trace_id}/{span_id}"),
        ("TRACE_URL_TEMPLATE", 42),
        ("API_TENANT_RESOLVER", "tests.api.no_such_function"),
        ("API_TENANT_RESOLVER", 42),
        ("API_PERMISSION_CLASSES", "ml_audit.api.permissions.CanViewPredictions"),
        ("API_PERMISSION_CLASSES", [42]),
        ("API_PAGINATION", "offset"),
        ("API_MAX_PAGE_SIZE", 0),
        ("API_MAX_PAGE_SIZE", "100"),
    ],
)
def test_invalid_api_settings_are_reported_by_the_system_check(
    settings: Any, key: str, value: object
) -> None:
    settings.ML_AUDIT = {key: value}

    messages = check_settings()

    assert [m.id for m in messages] == ["ml_audit.E001"]
    assert key in messages[0].msg
    with pytest.raises(ConfigurationError, match=key):
        getattr(audit_settings, key)


def test_default_api_settings_pass_the_system_check(settings: Any) -> None:
    settings.ML_AUDIT = {}

    assert check_settings() == []
    assert audit_settings.TRACE_URL_TEMPLATE is None
    assert audit_settings.API_TENANT_RESOLVER is None
    assert audit_settings.API_PAGINATION == "cursor"
    assert audit_settings.API_MAX_PAGE_SIZE == 1000
    assert configured_permission_classes() == [CanViewPredictions]


def test_unimportable_permission_class_is_a_configuration_error(settings: Any) -> None:
    settings.ML_AUDIT = {"API_PERMISSION_CLASSES": ["tests.api.NoSuchPermission"]}

    with pytest.raises(ConfigurationError, match="cannot be imported"):
        configured_permission_classes()


def test_tenant_resolver_returning_garbage_is_a_configuration_error(
    client: APIClient, settings: Any
) -> None:
    settings.ML_AUDIT = {"API_TENANT_RESOLVER": lambda request: 42}

    with pytest.raises(ConfigurationError, match="API_TENANT_RESOLVER"):
        client.get(PREDICTIONS)
