"""The human side of a decision in the REST API: the subject, review and outcome filters of
``GET predictions/``, and each prediction's reviews, effective outcome, outcomes and reason
codes, within the three-query budget."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from ml_audit.api import filters, rows
from ml_audit.decision_models import ReviewAction
from ml_audit.models import AccessLog, PredictionEvent
from ml_audit.services import ActorPayload, attach_explanation

from ..conftest import is_postgres
from . import decisions
from .decisions import subject_ref
from .test_api import PREDICTIONS, T0, TRACE, detail, make_user, record, trace_detail

pytestmark = pytest.mark.django_db

MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def client() -> APIClient:
    api = APIClient()
    api.force_authenticate(make_user("reader", "view_predictionevent"))
    return api


@pytest.fixture
def trail() -> dict[str, PredictionEvent]:
    """Predictions about two subjects (one in another tenant) and none, with reviews and
    outcomes of every kind."""
    ann = decisions.about(
        "ann",
        prediction_id="ann-1",
        timestamp=T0,
        actor=ActorPayload("user", "7", tenant_id="acme"),
    )
    ann_later = decisions.about(
        "ann",
        prediction_id="ann-2",
        timestamp=T0 + MINUTE,
        actor=ActorPayload("user", "7", tenant_id="acme"),
    )
    bob = decisions.about(
        "bob",
        prediction_id="bob-1",
        timestamp=T0,
        actor=ActorPayload("user", "8", tenant_id="globex"),
    )
    nobody = record(prediction_id="nobody", timestamp=T0 - MINUTE)
    decisions.review(ann, "confirm", at=T0 + MINUTE)
    decisions.review(ann, "override", final_outcome="declined", at=T0 + 2 * MINUTE)
    decisions.review(ann_later, "escalate", at=T0 + 2 * MINUTE)
    decisions.review(bob, "contest_received", at=T0 + MINUTE, reviewer=("subject", "bob"))
    decisions.review(bob, "contest_resolved", at=T0 + 3 * MINUTE)
    decisions.outcome(ann, "repaid", observed_at=T0 + 9 * MINUTE, source="ledger")
    decisions.outcome(nobody, "defaulted", observed_at=T0)
    return {"ann": ann, "ann_later": ann_later, "bob": bob, "nobody": nobody}


def listed(client: APIClient, **params: Any) -> list[str]:
    response = client.get(PREDICTIONS, params)
    assert response.status_code == 200, response.content
    return sorted(row["prediction_id"] for row in response.json()["results"])


# ----------------------------------------------------------------------------- filters


@pytest.mark.usefixtures("trail")
def test_subject_filter_matches_the_reference(client: APIClient) -> None:
    assert listed(client, subject=subject_ref("ann")) == ["ann-1", "ann-2"]
    assert listed(client, subject=subject_ref("bob")) == ["bob-1"]
    assert listed(client, subject=subject_ref("carol")) == []
    # Hex digits in upper case are the same reference; an empty value is no filter.
    assert listed(client, subject=subject_ref("ann").upper()) == ["ann-1", "ann-2"]
    assert len(listed(client, subject="")) == 4


@pytest.mark.parametrize(
    "value",
    [
        "ann@example.com",  # an identifier, not a reference
        "ann",
        "0" * 63,
        "0" * 65,
        "g" * 64,
        " " + "0" * 63,
        "0" * 32 + "-" + "0" * 31,
    ],
)
def test_subject_filter_refuses_anything_but_a_reference(client: APIClient, value: str) -> None:
    response = client.get(PREDICTIONS, {"subject": value})

    assert response.status_code == 400
    assert list(response.json()) == ["subject"]
    assert "64 hex digits" in response.json()["subject"][0]


@pytest.mark.usefixtures("trail")
def test_review_action_filter_keeps_predictions_with_such_a_review(client: APIClient) -> None:
    assert listed(client, review_action="confirm") == ["ann-1"]
    # An override counts even when a later review came after it.
    assert listed(client, review_action="override") == ["ann-1"]
    assert listed(client, review_action="escalate") == ["ann-2"]
    assert listed(client, review_action="contest_received") == ["bob-1"]
    assert listed(client, review_action="contest_resolved") == ["bob-1"]
    assert set(ReviewAction.values) == {
        "confirm",
        "override",
        "escalate",
        "contest_received",
        "contest_resolved",
    }


@pytest.mark.parametrize("value", ["Override", "overridden", "approve", "1"])
def test_review_action_filter_refuses_other_values(client: APIClient, value: str) -> None:
    response = client.get(PREDICTIONS, {"review_action": value})

    assert response.status_code == 400
    assert list(response.json()) == ["review_action"]


@pytest.mark.usefixtures("trail")
def test_has_override_and_has_outcome(client: APIClient) -> None:
    assert listed(client, has_override="true") == ["ann-1"]
    assert listed(client, has_override="false") == ["ann-2", "bob-1", "nobody"]
    assert listed(client, has_outcome="1") == ["ann-1", "nobody"]
    assert listed(client, has_outcome="0") == ["ann-2", "bob-1"]
    assert listed(client, has_outcome="true", has_override="false") == ["nobody"]
    assert listed(client, has_outcome="true", subject=subject_ref("ann")) == ["ann-1"]
    assert listed(client, review_action="escalate", has_outcome="true") == []
    for name in ("has_override", "has_outcome"):
        response = client.get(PREDICTIONS, {name: "maybe"})
        assert response.status_code == 400
        assert list(response.json()) == [name]


@pytest.mark.usefixtures("trail")
def test_filters_stay_within_the_tenant_scope(settings: Any) -> None:
    def resolver(request: Any) -> Any:
        return ["acme"]

    settings.ML_AUDIT = {"API_TENANT_RESOLVER": resolver}
    api = APIClient()
    api.force_authenticate(make_user("scoped", "view_predictionevent"))

    assert listed(api, subject=subject_ref("bob")) == []
    assert listed(api, review_action="contest_received") == []
    assert listed(api, has_override="false") == ["ann-2", "nobody"]


def test_the_new_filters_are_read_from_the_query() -> None:
    names = filters.parameter_names(filters.PredictionEventFilterSet)

    assert {"subject", "review_action", "has_override", "has_outcome"} <= names


# ----------------------------------------------------------------------------- fields


def test_detail_shows_reviews_effective_outcome_outcomes_and_reason_codes(
    client: APIClient, trail: dict[str, PredictionEvent]
) -> None:
    ann = trail["ann"]
    stale = attach_explanation(ann, "shap", {"amount": 0.9})
    decisions.reason_codes(stale, "R7")
    current = attach_explanation(ann, "shap", {"amount": 0.4})
    decisions.reason_codes(current, "R1", "R2")
    decisions.outcome(ann, "late", observed_at=T0 + 4 * MINUTE, source="crm")

    body = client.get(detail(ann.pk)).json()

    assert body["subject_ref"] == subject_ref("ann")
    assert (body["decision_outcome"], body["effective_outcome"]) == ("", "declined")
    assert [(r["action"], r["final_outcome"]) for r in body["reviews"]] == [
        ("override", "declined"),
        ("confirm", ""),
    ]
    first = body["reviews"][0]
    assert set(first) == {
        "id",
        "action",
        "final_outcome",
        "reviewer_type",
        "reviewer_id",
        "reason",
        "comment",
        "created_at",
    }
    assert (first["reviewer_type"], first["reviewer_id"]) == ("user", "alice")
    assert first["created_at"] == "2026-03-03T10:02:00Z"
    assert [(o["value"], o["source"]) for o in body["outcomes"]] == [
        ("repaid", "ledger"),
        ("late", "crm"),
    ]
    assert body["outcome"] == {
        "value": "repaid",
        "observed_at": "2026-03-03T10:09:00Z",
        "source": "ledger",
        "recorded_at": "2026-03-03T10:09:00Z",
    }
    assert body["explanation"]["revision"] == 2
    assert body["explanation"]["reason_codes"] == [
        {
            "code": "R1",
            "text": "text of R1",
            "feature": "feature_r1",
            "direction": "+",
            "contribution": 0.5,
        },
        {
            "code": "R2",
            "text": "text of R2",
            "feature": "feature_r2",
            "direction": "+",
            "contribution": 0.25,
        },
    ]
    keys = list(body)
    assert keys.index("effective_outcome") == keys.index("decision_outcome") + 1
    assert keys[keys.index("explanation_revisions") + 1 :][:3] == ["reviews", "outcome", "outcomes"]


def test_a_prediction_nobody_reviewed_keeps_the_models_outcome(client: APIClient) -> None:
    event = record(prediction_id="plain", decision_outcome="approve")
    decisions.review(event, "confirm")
    decisions.review(event, "escalate", at=T0 + MINUTE)

    [row] = client.get(PREDICTIONS).json()["results"]

    assert (row["decision_outcome"], row["effective_outcome"]) == ("approve", "approve")
    assert row["subject_ref"] == ""
    assert row["outcome"] is None
    assert row["outcomes"] == []
    assert row["explanation"] is None


def test_the_latest_override_wins(client: APIClient) -> None:
    event = record(prediction_id="twice", decision_outcome="approve")
    decisions.review(event, "override", final_outcome="decline", at=T0 + MINUTE)
    decisions.review(event, "override", final_outcome="refer", at=T0 + 3 * MINUTE)
    decisions.review(event, "override", final_outcome="approve", at=T0 + 2 * MINUTE)
    decisions.review(event, "confirm", at=T0 + 4 * MINUTE)

    body = client.get(detail(event.pk)).json()

    assert body["effective_outcome"] == "refer"
    assert [r["final_outcome"] for r in body["reviews"]] == ["", "refer", "approve", "decline"]


def test_list_and_trace_items_carry_the_same_fields(
    client: APIClient, trail: dict[str, PredictionEvent]
) -> None:
    traced = record(prediction_id="traced", trace_id=TRACE)
    decisions.review(traced, "override", final_outcome="manual")
    decisions.outcome(traced, {"label": 1})

    [from_list] = client.get(PREDICTIONS, {"prediction_id": "traced"}).json()["results"]
    [from_trace] = client.get(trace_detail(TRACE)).json()["predictions"]
    from_detail = client.get(detail(traced.pk)).json()

    assert from_list == from_trace == from_detail
    assert from_list["effective_outcome"] == "manual"
    assert from_list["outcome"]["value"] == {"label": 1}


def test_an_empty_page_reads_nothing_more(client: APIClient) -> None:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(PREDICTIONS, {"subject": subject_ref("nobody")})

    assert response.json()["results"] == []
    related = [q for q in captured.captured_queries if "UNION" in q["sql"]]
    assert related == []
    assert rows.related_of("default", []) == {}


# ----------------------------------------------------------------------------- budget


_AUTH_TABLES = re.compile(r'(FROM|JOIN) "(django_session|auth_\w+)"')


def _data_queries(captured: CaptureQueriesContext) -> list[str]:
    """The queries of a request but the access log's INSERT and the permission look-ups (the
    auth backend's, cached per user object)."""
    sql = [query["sql"] for query in captured.captured_queries]
    log_inserts = [q for q in sql if q.startswith('INSERT INTO "ml_audit_accesslog"')]
    assert len(log_inserts) == 1, sql
    return [q for q in sql if q not in log_inserts and not _AUTH_TABLES.search(q)]


@pytest.mark.parametrize("mode", ["cursor", "page"])
@pytest.mark.parametrize("page_size", [1, 40])
def test_three_queries_whatever_the_page_holds(settings: Any, mode: str, page_size: int) -> None:
    settings.ML_AUDIT = {"API_PAGINATION": mode}
    events = [
        decisions.about(
            f"s{n % 5}",
            prediction_id=f"p{n}",
            timestamp=T0 + dt.timedelta(seconds=n),
            decision_outcome="approve",
        )
        for n in range(50)
    ]
    for n, event in enumerate(events):
        explanation = attach_explanation(event, "shap", {"x": n})
        decisions.reason_codes(explanation, f"R{n}")
        decisions.review(event, "confirm", at=T0 + MINUTE)
        decisions.review(event, "override", final_outcome=f"o{n}", at=T0 + 2 * MINUTE)
        decisions.outcome(event, n, observed_at=T0 + MINUTE)
        decisions.outcome(event, -n, observed_at=T0 + 2 * MINUTE)
    api = APIClient()
    api.force_authenticate(make_user("auditor", "view_predictionevent", "view_requestingactor"))
    params: dict[str, Any] = {
        "page_size": page_size,
        "has_override": "true",
        "has_outcome": "true",
        "review_action": "confirm",
    }

    with CaptureQueriesContext(connection) as listing:
        page = api.get(PREDICTIONS, params).json()["results"]
    with CaptureQueriesContext(connection) as one:
        single = api.get(detail(events[7].pk)).json()

    # The page, everything that hangs off it, and in page mode the count.
    assert len(_data_queries(listing)) == (3 if mode == "page" else 2)
    assert len(_data_queries(one)) == 2  # the prediction; everything that hangs off it
    assert len(page) == min(page_size, 50)
    for row in page:
        n = int(row["prediction_id"][1:])
        assert row["effective_outcome"] == f"o{n}"
        assert [o["value"] for o in row["outcomes"]] == [-n, n]
        assert row["explanation"]["reason_codes"][0]["code"] == f"R{n}"
        assert len(row["reviews"]) == 2
    assert single["effective_outcome"] == "o7"


def test_object_permissions_path_keeps_the_budget(settings: Any) -> None:
    from .test_fast_paths import RefuseFailedPredictions

    settings.ML_AUDIT = {
        "API_PERMISSION_CLASSES": [
            "ml_audit.api.permissions.CanViewPredictions",
            RefuseFailedPredictions,
        ]
    }
    event = decisions.about("ann", prediction_id="ann")
    decisions.review(event, "override", final_outcome="no")
    api = APIClient()
    api.force_authenticate(make_user("auditor", "view_predictionevent"))

    with CaptureQueriesContext(connection) as captured:
        body = api.get(detail(event.pk)).json()

    assert len(_data_queries(captured)) == 2
    assert body["effective_outcome"] == "no"
    assert body["subject_ref"] == subject_ref("ann")


# ----------------------------------------------------------------------------- access log


def test_access_log_keeps_prediction_ids_only(
    client: APIClient, trail: dict[str, PredictionEvent]
) -> None:
    client.get(PREDICTIONS, {"subject": subject_ref("ann"), "has_outcome": "true"})
    client.get(detail(trail["ann"].pk))
    client.get(PREDICTIONS, {"subject": "ann@example.com"})

    listing, one, refused = AccessLog.objects.order_by("accessed_at", "id")
    assert listing.returned_ids == [str(trail["ann"].pk)]
    assert listing.query == {"subject": [subject_ref("ann")], "has_outcome": ["true"]}
    assert one.returned_ids == [str(trail["ann"].pk)]
    assert (one.result_count, one.endpoint) == (1, "predictions-detail")
    assert (refused.status_code, refused.returned_ids) == (400, [])


# ----------------------------------------------------------------------------- indexes


def _plan(queryset: Any) -> str:
    with connection.cursor() as cursor:
        # A few rows make a sequential scan the cheapest plan; this asks whether an index
        # *can* serve the query (the 1M-row benchmark shows that the planner picks it).
        cursor.execute("SET LOCAL enable_seqscan = off")
        try:
            return str(queryset.explain())
        finally:
            cursor.execute("SET LOCAL enable_seqscan = on")


@pytest.mark.postgres
@pytest.mark.usefixtures("trail")
def test_postgresql_serves_the_filters_from_migration_0010_indexes() -> None:
    assert is_postgres()
    base = rows.prediction_values("default", show_request_context=False).order_by(
        "-timestamp", "-id"
    )
    cases = {
        "ml_audit_pred_subject": {"subject": subject_ref("ann")},
        "ml_audit_review_action": {"review_action": "escalate"},
        "ml_audit_outcome_pred": {"has_outcome": "true"},
    }
    for index, params in cases.items():
        filterset = filters.PredictionEventFilterSet(data=params, queryset=base)
        assert filterset.is_valid(), filterset.errors
        assert index in _plan(filterset.qs[:101]), (index, _plan(filterset.qs[:101]))
    overrides = filters.PredictionEventFilterSet(data={"has_override": "false"}, queryset=base)
    assert "ml_audit_review_action" in _plan(overrides.qs[:101])


@pytest.mark.postgres
def test_postgresql_reads_related_rows_by_their_prediction_indexes(
    trail: dict[str, PredictionEvent],
) -> None:
    ids = [event.pk for event in trail.values()]
    template = rows._related_templates("default")
    branches = [branch.filter(prediction_id__in=ids) for branch in template]
    plan = _plan(branches[0].union(*branches[1:], all=True))

    assert "Seq Scan" not in plan, plan
    assert "ml_audit_outcome_pred" in plan, plan
    assert "ml_audit_expl_prediction_revision" in plan, plan
    # Either review index holds prediction_id; on a few rows the planner may take the other
    # one (the benchmark's --explain shows ml_audit_review_pred at a million rows).
    assert re.search(r"Index Scan on ml_audit_review_(pred|action)\b", plan), plan


# ----------------------------------------------------------------------------- schema


@pytest.fixture
def document(client: APIClient) -> dict[str, Any]:
    pytest.importorskip("drf_spectacular", reason="drf-spectacular (the openapi extra)")
    from .test_schema import fetch

    return fetch(client)


def test_schema_documents_the_filters(client: APIClient, document: dict[str, Any]) -> None:
    from .test_schema import PREFIX, query_parameters

    parameters = query_parameters(document, f"{PREFIX}/predictions/")

    assert parameters["subject"]["schema"] == {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
    assert parameters["review_action"]["schema"] == {
        "type": "string",
        "enum": sorted(ReviewAction.values),
    }
    for name in ("has_override", "has_outcome"):
        assert parameters[name]["schema"] == {"type": "boolean"}
    for name in ("subject", "review_action", "has_override", "has_outcome"):
        assert parameters[name]["description"]
    # What the pattern allows, the API takes; what it rules out, the API refuses.
    pattern = re.compile(parameters["subject"]["schema"]["pattern"])
    for value in (subject_ref("x"), subject_ref("x").upper(), "x" * 64, "0" * 63):
        response = client.get(PREDICTIONS, {"subject": value})
        assert response.status_code == (200 if pattern.fullmatch(value) else 400)


def test_schema_documents_the_fields_the_api_returns(
    client: APIClient, document: dict[str, Any]
) -> None:
    event = decisions.about("ann", prediction_id="ann")
    decisions.review(event, "override", final_outcome="no")
    decisions.outcome(event, 1)
    schemas = document["components"]["schemas"]
    item = client.get(detail(event.pk)).json()

    prediction = schemas["PredictionEvent"]["properties"]
    assert list(prediction) == list(item)
    assert prediction["subject_ref"]["type"] == "string"
    assert prediction["effective_outcome"]["type"] == "string"
    assert prediction["reviews"]["items"] == {"$ref": "#/components/schemas/Review"}
    assert prediction["outcomes"]["items"] == {"$ref": "#/components/schemas/Outcome"}
    assert prediction["outcome"]["allOf"] == [{"$ref": "#/components/schemas/Outcome"}]
    assert prediction["outcome"]["nullable"] is True
    assert list(schemas["Review"]["properties"]) == list(item["reviews"][0])
    assert schemas["Review"]["properties"]["action"]["enum"] == list(ReviewAction.values)
    assert list(schemas["Outcome"]["properties"]) == list(item["outcome"])
    explanation = prediction["explanation"]["allOf"][0]["$ref"].rsplit("/", 1)[-1]
    codes = schemas[explanation]["properties"]["reason_codes"]
    assert codes["nullable"] is True
    assert set(codes["items"]["properties"]) == {
        "code",
        "text",
        "feature",
        "direction",
        "contribution",
    }
