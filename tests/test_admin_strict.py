"""The admin is as strict as the API: tenant scope, field permissions, access log, no crashes.

Staff users here are tenant-scoped by ``ML_AUDIT['API_TENANT_RESOLVER']`` (by username, see
:data:`TENANTS`); every admin of the audit models reads through that scope, refuses lookups on
request context the user may not see, and logs its reads of predictions and explanations.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth.models import Permission, User
from django.db import DatabaseError, connection
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ml_audit.models import AccessLog, Explanation, ModelVersion, PredictionEvent, RequestingActor
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event
from tests.queries import all_queries

pytestmark = pytest.mark.django_db

#: username -> the tenants the resolver allows (absent: every tenant).
TENANTS: dict[str, list[str]] = {
    "acme-staff": ["acme"],
    "globex-staff": ["globex"],
    "nobody-staff": [],
}
ACME_IP = "203.0.113.77"
ACME_AGENT = "curl/8.0-secret-agent"
ACME_TOKEN = "tok-acme-1"
VIEW_ALL = (
    "view_predictionevent",
    "view_explanation",
    "view_modelversion",
    "view_accesslog",
)


def resolver(request: Any) -> list[str] | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return TENANTS.get(user.get_username())


@pytest.fixture(autouse=True)
def _tenant_scoping(settings: Any) -> None:
    settings.ML_AUDIT = {"API_TENANT_RESOLVER": resolver}


def record(tenant: str, **overrides: Any) -> PredictionEvent:
    kwargs: dict[str, Any] = {
        "model_name": f"{tenant or 'shared'}-model",
        "model_version": "1",
        "features": {"age": 42},
        "output": {"score": 0.5},
        "decision_outcome": f"{tenant or 'shared'}-outcome",
        "confidence": 0.5,
        "environment": f"{tenant or 'shared'}-env",
        "actor": ActorPayload(
            "user",
            f"{tenant or 'shared'}-user",
            tenant_id=tenant,
            ip_address=ACME_IP if tenant == "acme" else "198.51.100.7",
            user_agent=ACME_AGENT if tenant == "acme" else "other-agent",
            auth_context={"token_id": ACME_TOKEN if tenant == "acme" else "tok-other"},
        ),
        "timestamp": dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC),
    }
    kwargs.update(overrides)
    return record_prediction_event(**kwargs)


@pytest.fixture
def events() -> dict[str, PredictionEvent]:
    acme = record("acme", prediction_id="acme-1")
    globex = record(
        "globex",
        prediction_id="globex-1",
        timestamp=dt.datetime(2024, 6, 1, 8, 0, tzinfo=dt.UTC),
    )
    shared = record("", prediction_id="untenanted-1")
    for event in (acme, globex):
        attach_explanation(event, "shap", {"age": 0.1}, f"why {event.prediction_id}")
    return {"acme": acme, "globex": globex, "shared": shared}


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="ml_audit", codename__in=codenames)
    )
    return user


def login(client: Client, username: str, *codenames: str) -> Client:
    client.force_login(staff(username, *codenames))
    return client


@pytest.fixture
def acme(client: Client) -> Client:
    return login(client, "acme-staff", *VIEW_ALL)


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:ml_audit_{name}", args=args)


def shown(client: Client, name: str, **params: str) -> list[Any]:
    response = client.get(url(f"{name}_changelist"), params)
    assert response.status_code == 200, response.status_code
    return list(response.context["cl"].result_list)


def not_found(client: Client, name: str, pk: Any) -> bool:
    """Whether the change view answers ``pk`` as Django answers an id that does not exist."""
    response = client.get(url(f"{name}_change", pk))
    missing = client.get(url(f"{name}_change", uuid.uuid4()))
    return bool(
        response.status_code == missing.status_code == 302
        and response["Location"] == missing["Location"]
    )


# ----------------------------------------------------------------------------- tenant scope


def test_a_tenants_staff_sees_only_its_predictions(
    acme: Client, events: dict[str, PredictionEvent]
) -> None:
    assert [e.pk for e in shown(acme, "predictionevent")] == [events["acme"].pk]
    assert acme.get(url("predictionevent_change", events["acme"].pk)).status_code == 200
    assert not_found(acme, "predictionevent", events["globex"].pk)
    assert not_found(acme, "predictionevent", events["shared"].pk)  # no tenant: unscoped only
    history = acme.get(url("predictionevent_history", events["globex"].pk))
    assert history.status_code == 302
    # Filters, search and the date drill-down cannot reach past the scope either.
    assert shown(acme, "predictionevent", tenant_id="globex") == []
    assert shown(acme, "predictionevent", tenant_id__exact="globex") == []
    assert shown(acme, "predictionevent", q="globex-1") == []
    assert shown(acme, "predictionevent", q=events["globex"].trace_id) == []
    assert shown(acme, "predictionevent", timestamp__year="2024") == []
    assert shown(acme, "predictionevent", model__id__exact=str(events["globex"].model_id)) == []


def test_counts_filter_choices_and_drill_down_come_from_the_scope(
    acme: Client, events: dict[str, PredictionEvent]
) -> None:
    record("globex", prediction_id="globex-2")
    record("acme", prediction_id="acme-2", model_name="acme-other")
    response = acme.get(url("predictionevent_changelist"))
    cl = response.context["cl"]
    assert cl.result_count == 2

    def choices(title: str) -> list[str]:
        (spec,) = [f for f in cl.filter_specs if f.title == title]
        return [choice["display"] for choice in spec.choices(cl)][1:]  # without "All"

    assert choices("tenant") == ["acme"]
    assert choices("decision outcome") == ["acme-outcome"]
    assert choices("environment") == ["acme-env"]
    assert choices("model") == ["acme-model@1", "acme-other@1"]
    html = response.content.decode()
    assert "globex" not in html
    assert "2024" not in html  # the globex prediction's year is not offered


def test_unscoped_staff_sees_every_tenant(
    client: Client, events: dict[str, PredictionEvent]
) -> None:
    login(client, "auditor", *VIEW_ALL)
    assert {e.pk for e in shown(client, "predictionevent")} == {e.pk for e in events.values()}


def test_a_resolver_allowing_no_tenant_shows_nothing(
    client: Client, events: dict[str, PredictionEvent]
) -> None:
    login(client, "nobody-staff", *VIEW_ALL)
    access_row(None, "unscoped")
    for name in ("predictionevent", "explanation", "modelversion"):
        assert shown(client, name) == [], name
    # Only the rows of its own reads, scoped to no tenant either.
    assert {row.tenant_scope == [] for row in shown(client, "accesslog")} == {True}


def test_an_explanation_of_another_tenants_prediction_is_invisible(
    acme: Client, events: dict[str, PredictionEvent]
) -> None:
    mine = Explanation.objects.get(prediction=events["acme"])
    theirs = Explanation.objects.get(prediction=events["globex"])

    assert [e.pk for e in shown(acme, "explanation")] == [mine.pk]
    assert acme.get(url("explanation_change", mine.pk)).status_code == 200
    assert not_found(acme, "explanation", theirs.pk)
    assert shown(acme, "explanation", prediction=str(events["globex"].pk)) == []
    html = acme.get(url("explanation_changelist")).content.decode()
    assert "why globex-1" not in html


def test_model_versions_and_actors_are_scoped(
    client: Client, events: dict[str, PredictionEvent]
) -> None:
    login(client, "acme-staff", *VIEW_ALL, "view_requestingactor")
    theirs_model = ModelVersion.objects.get(pk=events["globex"].model_id)
    assert events["globex"].actor_id is not None
    theirs_actor = RequestingActor.objects.get(pk=events["globex"].actor_id)

    assert [m.model_name for m in shown(client, "modelversion")] == ["acme-model"]
    assert not_found(client, "modelversion", theirs_model.pk)
    assert shown(client, "modelversion", q="globex") == []
    assert [a.actor_id for a in shown(client, "requestingactor")] == ["acme-user"]
    assert not_found(client, "requestingactor", theirs_actor.pk)
    assert shown(client, "requestingactor", q="globex-user") == []


def access_row(tenant_scope: list[str] | None, username: str) -> AccessLog:
    return AccessLog.objects.create(
        accessed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        username=username,
        endpoint="predictions-list",
        method="GET",
        path="/api/ml-audit/predictions/",
        status_code=200,
        tenant_scope=tenant_scope,
    )


def test_the_access_log_shows_a_scoped_user_only_reads_scoped_within_its_tenants(
    settings: Any, client: Client
) -> None:
    settings.ML_AUDIT = {"API_TENANT_RESOLVER": resolver, "API_ACCESS_LOG": False}
    rows = {
        "unscoped": access_row(None, "unscoped"),
        "acme": access_row(["acme"], "acme-reader"),
        "none": access_row([], "no-tenant-reader"),
        "both": access_row(["acme", "globex"], "both-reader"),
        "globex": access_row(["globex"], "globex-reader"),
    }
    login(client, "acme-staff", *VIEW_ALL)

    assert {row.username for row in shown(client, "accesslog")} == {
        "acme-reader",
        "no-tenant-reader",
    }
    assert client.get(url("accesslog_change", rows["acme"].pk)).status_code == 200
    for hidden in ("unscoped", "both", "globex"):
        assert not_found(client, "accesslog", rows[hidden].pk), hidden


# ----------------------------------------------------------------------------- field permissions

HIDDEN_LOOKUPS = [
    ("predictionevent", {"client_ip": ACME_IP}),
    ("predictionevent", {"client_ip__isnull": "False"}),
    ("predictionevent", {"user_agent__startswith": "curl"}),
    ("predictionevent", {"user_agent": ACME_AGENT}),
    ("predictionevent", {"auth_context__token_id__startswith": "tok-a"}),
    ("predictionevent", {"auth_context__has_key": "token_id"}),
    ("explanation", {"prediction__client_ip": ACME_IP}),
    ("explanation", {"prediction__user_agent__contains": "secret"}),
]


@pytest.mark.parametrize(("name", "params"), HIDDEN_LOOKUPS)
def test_lookups_on_request_context_need_the_permission(
    client: Client, events: dict[str, PredictionEvent], name: str, params: dict[str, str]
) -> None:
    login(client, "acme-staff", *VIEW_ALL)
    matching = client.get(url(f"{name}_changelist"), params)
    other = client.get(
        url(f"{name}_changelist"), {key: "x" + value for key, value in params.items()}
    )

    # Refused whatever the value: no row count to learn a value from.
    assert matching.status_code == other.status_code == 400
    assert matching.content == other.content


def test_with_the_permission_request_context_can_be_filtered(
    client: Client, events: dict[str, PredictionEvent]
) -> None:
    login(client, "acme-staff", *VIEW_ALL, "view_requestingactor")
    for params in (
        {"client_ip": ACME_IP},
        {"user_agent__startswith": "curl"},
        {"auth_context__token_id__startswith": "tok-a"},
    ):
        assert [e.pk for e in shown(client, "predictionevent", **params)] == [events["acme"].pk]
    assert shown(client, "predictionevent", client_ip="198.51.100.7") == []  # globex's: scoped


def test_the_detail_hides_request_context_without_the_permission(
    client: Client, events: dict[str, PredictionEvent]
) -> None:
    login(client, "acme-staff", *VIEW_ALL)
    html = client.get(url("predictionevent_change", events["acme"].pk)).content.decode()
    for secret in (ACME_IP, ACME_AGENT, ACME_TOKEN, "Request context"):
        assert secret not in html
    page = client.get(url("explanation_change", events["acme"].explanations.get().pk))
    for secret in (ACME_IP, ACME_AGENT, ACME_TOKEN):
        assert secret.encode() not in page.content


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("modelversion", {"predictions": "0" * 32}),  # a reverse relation
        ("modelversion", {"predictions__tenant_id": "globex"}),
        ("requestingactor", {"predictions__isnull": "False"}),
        ("predictionevent", {"explanations__summary_text": "why"}),
        ("predictionevent", {"prediction_id__regex": "("}),  # a database error on PostgreSQL
        ("predictionevent", {"features__age__iregex": ".*"}),
        ("predictionevent", {"model__model_name": "globex-model"}),  # not a list filter
    ],
)
def test_lookups_through_reverse_relations_and_regular_expressions_are_refused(
    admin_client: Client, events: dict[str, PredictionEvent], name: str, params: dict[str, str]
) -> None:
    assert admin_client.get(url(f"{name}_changelist"), params).status_code == 400


# ----------------------------------------------------------------------------- nothing crashes

CRAFTED = [
    {"decision_outcome": "a\x00b"},
    {"tenant_id": "\x00"},
    {"environment__exact": "a\x00"},
    {"status__exact": "\x00"},
    {"features__age\x00": "1"},
    {"features__a": "\x00"},
    {"q": "acme-1\x00"},
    {"timestamp__year": "9999"},
    {"timestamp__year": "9999", "timestamp__month": "12"},
    {"timestamp__year": "9999", "timestamp__month": "12", "timestamp__day": "31"},
    {"timestamp__year": "0"},
    {"timestamp__year": "99999999999999999999"},
    {"timestamp__year": "2026", "timestamp__month": "13"},
    {"timestamp__year": "x"},
    {"timestamp__gte": "9999-12-31T23:59:59-05:00"},
    {"timestamp__lt": "0001-01-01T00:00:00+05:00"},
    {"timestamp__gte": "99999-01-01"},
    {"timestamp__iso_year": "1000000"},
    {"timestamp__hour": "99999999999999999999999"},
    {"model__id__exact": "foo"},
    {"id": "foo"},
    {"id__in": "foo,bar"},
    {"confidence__gt": "nan"},
    {"latency_ms__lt": "1e400"},
    {"prediction_id__in": "a,\x00"},
    {"nonexistent": "1"},
    {"p": "9999999999999999999"},
    {"p": "-1"},
    {"p": "x"},
    {"o": "x.-9.99"},
    {"_to_field": "client_ip"},
    {"e": "1"},
    {"all": ""},
    {"_facets": "1"},
]


@pytest.mark.parametrize("params", CRAFTED)
@pytest.mark.parametrize("context", [False, True])
def test_crafted_change_list_urls_are_never_a_server_error(
    client: Client, events: dict[str, PredictionEvent], params: dict[str, str], context: bool
) -> None:
    extra = ("view_requestingactor",) if context else ()
    login(client, "acme-staff", *VIEW_ALL, *extra)
    response = client.get(url("predictionevent_changelist") + "?" + urlencode(params))
    assert response.status_code in (200, 302, 400), response.status_code


OTHER_ADMINS = {
    "explanation": ["prediction", "generated_at", "payload__age", "revision", "q"],
    "modelversion": ["model_name", "created_at", "config_snapshot__a", "is_active", "q"],
    "requestingactor": ["actor_id", "created_at", "tenant_id", "q"],
    "accesslog": ["accessed_at", "client_ip", "status_code", "returned_ids", "tenant_scope"],
}
CRAFTED_VALUES = ["\x00", "garbage", "99999-01-01", "9999-12-31T23:59:59-05:00", "1e400", "-1"]


@pytest.mark.parametrize(
    ("name", "field"), [(name, field) for name, fields in OTHER_ADMINS.items() for field in fields]
)
def test_crafted_urls_of_the_other_admins_are_never_a_server_error(
    admin_client: Client, events: dict[str, PredictionEvent], name: str, field: str
) -> None:
    access_row(["acme"], "reader")
    for value in CRAFTED_VALUES:
        for suffix in ("", "__in", "__gt", "__year", "__contains"):
            key = field if field == "q" else field + suffix
            response = admin_client.get(f"{url(f'{name}_changelist')}?{urlencode({key: value})}")
            assert response.status_code in (200, 302, 400), (key, value, response.status_code)
    if name == "accesslog":  # its date drill-down
        for year in ("9999", "0", "x"):
            response = admin_client.get(url("accesslog_changelist"), {"accessed_at__year": year})
            assert response.status_code in (200, 302)


@pytest.mark.parametrize(
    "params",
    [
        {"client_ip": "garbage"},  # inet: PostgreSQL refuses it inside the query
        {"client_ip__in": f"{ACME_IP},garbage"},
        {"client_ip__gt": "1.2.3"},
        {"client_ip__startswith": "203."},  # compared as text: any text
        {"client_ip": ACME_IP},
    ],
)
def test_ip_lookups_take_addresses(
    client: Client, events: dict[str, PredictionEvent], params: dict[str, str]
) -> None:
    login(client, "acme-staff", *VIEW_ALL, "view_requestingactor")
    response = client.get(url("predictionevent_changelist"), params)
    assert response.status_code in (200, 302)
    if "garbage" in str(params) or params.get("client_ip__gt"):
        assert response.status_code == 302  # Django's "invalid lookup" redirect (?e=1)
    else:
        assert [e.pk for e in response.context["cl"].result_list] == [events["acme"].pk]


@pytest.mark.parametrize(
    "path",
    [
        "predictionevent/{}/change/".format(quote("\x00")),
        "predictionevent/not-a-uuid/change/",
        "predictionevent/{}/change/".format("9" * 5000),
        "explanation/{}/change/".format(quote("é\x00")),
    ],
)
def test_crafted_object_ids_are_not_found(admin_client: Client, path: str) -> None:
    assert admin_client.get(f"/admin/ml_audit/{path}").status_code == 302


_FIELDS = st.sampled_from(
    [
        "prediction_id",
        "timestamp",
        "tenant_id",
        "decision_outcome",
        "confidence",
        "latency_ms",
        "features",
        "features__age",
        "output__score",
        "model",
        "actor",
        "id",
        "client_ip",
        "user_agent",
        "auth_context",
        "status",
        "trace_id",
    ]
)
_LOOKUPS = st.sampled_from(
    ["", "__exact", "__in", "__gt", "__lte", "__isnull", "__startswith", "__contains", "__year"]
)
_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "0", "-1", "1e400", "nan", "9999", "2026-03-04", "203.0.113.77"]),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda value: value.isoformat()),
)


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lookups=st.lists(st.tuples(_FIELDS, _LOOKUPS, _VALUES), min_size=1, max_size=3),
    context=st.booleans(),
)
def test_fuzzed_change_list_lookups_are_never_a_server_error(
    client: Client,
    events: dict[str, PredictionEvent],
    lookups: list[tuple[str, str, str]],
    context: bool,
) -> None:
    username = f"fuzz-{context}"
    user = User.objects.filter(username=username).first()
    if user is None:
        user = staff(username, *VIEW_ALL, *(("view_requestingactor",) if context else ()))
    client.force_login(user)
    query = urlencode([(field + lookup, value) for field, lookup, value in lookups])
    response = client.get(f"{url('predictionevent_changelist')}?{query}")
    assert response.status_code in (200, 302, 400), (query, response.status_code)
    if not context and any(
        field in ("client_ip", "user_agent", "auth_context") for field, *_ in lookups
    ):
        assert response.status_code == 400


# ----------------------------------------------------------------------------- access log


def test_change_list_and_change_view_reads_are_access_logged(
    client: Client, events: dict[str, PredictionEvent]
) -> None:
    user = staff("acme-staff", *VIEW_ALL)
    client.force_login(user)
    second = record(
        "acme", prediction_id="acme-2", timestamp=dt.datetime(2026, 3, 5, tzinfo=dt.UTC)
    )

    assert (
        client.get(url("predictionevent_changelist"), {"environment": "acme-env"}).status_code
        == 200
    )
    assert client.get(url("predictionevent_change", second.pk)).status_code == 200

    detail_row, list_row = AccessLog.objects.all()
    assert list_row.endpoint == "admin-predictions-list"
    assert list_row.user_id == str(user.pk)
    assert list_row.username == "acme-staff"
    assert list_row.method == "GET"
    assert list_row.path == url("predictionevent_changelist")
    assert list_row.query == {"environment": ["acme-env"]}
    assert list_row.status_code == 200
    assert list_row.returned_ids == [str(second.pk), str(events["acme"].pk)]  # as shown
    assert list_row.result_count == 2
    assert list_row.tenant_scope == ["acme"]
    assert list_row.client_ip == "127.0.0.1"
    assert detail_row.endpoint == "admin-prediction-detail"
    assert detail_row.returned_ids == [str(second.pk)]
    assert detail_row.result_count == 1


def test_explanation_reads_log_the_predictions_they_explain(
    acme: Client, events: dict[str, PredictionEvent]
) -> None:
    explanation = Explanation.objects.get(prediction=events["acme"])

    acme.get(url("explanation_changelist"))
    acme.get(url("explanation_change", explanation.pk))

    detail_row, list_row = AccessLog.objects.all()
    assert (list_row.endpoint, list_row.returned_ids) == (
        "admin-explanations-list",
        [str(events["acme"].pk)],
    )
    assert (detail_row.endpoint, detail_row.returned_ids) == (
        "admin-explanation-detail",
        [str(events["acme"].pk)],
    )


def test_refused_and_missing_reads_are_logged_without_ids(
    client: Client, events: dict[str, PredictionEvent]
) -> None:
    login(client, "acme-staff", *VIEW_ALL)
    client.get(url("predictionevent_changelist"), {"client_ip": ACME_IP})  # 400
    client.get(url("predictionevent_change", events["globex"].pk))  # another tenant's: 302
    client.post(url("predictionevent_change", events["acme"].pk), {})  # read-only: 403
    client.get(url("predictionevent_changelist"), {"timestamp__year": "9999"})  # invalid: 302

    invalid, post, other_tenant, refused = AccessLog.objects.all()
    assert (refused.status_code, refused.returned_ids) == (400, [])
    assert refused.query == {"client_ip": [ACME_IP]}
    assert (other_tenant.endpoint, other_tenant.status_code) == ("admin-prediction-detail", 302)
    assert other_tenant.returned_ids == []
    assert (post.method, post.status_code, post.returned_ids) == ("POST", 403, [])
    assert (invalid.status_code, invalid.returned_ids) == (302, [])


def test_a_staff_user_without_the_view_permission_is_logged(client: Client) -> None:
    login(client, "acme-staff", "view_modelversion")
    assert client.get(url("predictionevent_changelist")).status_code == 403
    row = AccessLog.objects.get()
    assert (row.endpoint, row.status_code, row.username) == (
        "admin-predictions-list",
        403,
        "acme-staff",
    )


def test_other_admin_pages_are_not_logged(
    admin_client: Client, events: dict[str, PredictionEvent]
) -> None:
    admin_client.get(url("modelversion_changelist"))
    admin_client.get(url("accesslog_changelist"))
    admin_client.get(url("predictionevent_history", events["acme"].pk))
    assert not AccessLog.objects.exists()


def test_the_admin_access_log_follows_the_api_setting(
    settings: Any, acme: Client, events: dict[str, PredictionEvent]
) -> None:
    settings.ML_AUDIT = {"API_TENANT_RESOLVER": resolver, "API_ACCESS_LOG": False}
    acme.get(url("predictionevent_changelist"))
    acme.get(url("predictionevent_change", events["acme"].pk))
    assert not AccessLog.objects.exists()


def test_a_page_is_not_sent_when_its_read_cannot_be_logged(
    acme: Client, events: dict[str, PredictionEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_save(self: AccessLog, *args: Any, **kwargs: Any) -> None:
        raise DatabaseError("audit database is down")

    monkeypatch.setattr(AccessLog, "save", broken_save)
    for page in (
        url("predictionevent_changelist"),
        url("predictionevent_change", events["acme"].pk),
    ):
        with pytest.raises(DatabaseError, match="audit database is down"):
            acme.get(page)


@pytest.mark.django_db(transaction=True)
def test_a_refused_admin_read_is_logged_under_atomic_requests(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    record("acme", prediction_id="acme-1")
    login(client, "acme-staff", *VIEW_ALL)

    assert client.get(url("predictionevent_changelist"), {"client_ip": ACME_IP}).status_code == 400

    assert AccessLog.objects.get().status_code == 400


# ----------------------------------------------------------------------------- fast paths


def test_every_query_of_a_scoped_change_list_is_scoped(
    acme: Client, events: dict[str, PredictionEvent]
) -> None:
    for params in ({}, {"timestamp__year": "2026"}, {"q": "acme-1"}, {"environment": "acme-env"}):
        with all_queries() as queries:
            shown(acme, "predictionevent", **params)
        reads = [sql for sql in queries if sql.startswith("SELECT") and "predictionevent" in sql]
        assert reads
        for sql in reads:
            assert '"tenant_id" IN' in sql, sql


def test_the_change_list_costs_one_insert_more_and_reads_its_page_once(
    admin_client: Client, events: dict[str, PredictionEvent]
) -> None:
    with all_queries() as queries:
        shown(admin_client, "predictionevent")
    inserts = [sql for sql in queries if sql.startswith("INSERT")]
    assert len(inserts) == 1
    assert "ml_audit_accesslog" in inserts[0]
    pages = [sql for sql in queries if '"ml_audit_predictionevent"."features"' in sql]
    assert len(pages) == 1  # the page of rows: read once, for the access log and the template


_WITHOUT_DRF = """
import sys
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=[
        "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
        "django.contrib.sessions", "django.contrib.messages", "ml_audit",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
)
django.setup()
import ml_audit.admin
print(sorted(m for m in sys.modules if m.startswith(("rest_framework", "django_filters"))))
"""


def test_the_admin_needs_no_rest_framework() -> None:
    # The admin applies the API's rules (ml_audit.api.access) without the drf extra.
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DRF], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
