"""``predictions/{uuid}/reviews/``: POST appends a review (``ml_audit.add_review``), GET lists
them with the effective outcome; tenant-scoped, access-logged, documented."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from rest_framework.test import APIClient

from ml_audit.decision_models import Review
from ml_audit.models import AccessLog, PredictionEvent
from ml_audit.oversight import record_review
from tests.oversight.conftest import make_user, predict
from tests.queries import all_queries

pytestmark = pytest.mark.django_db

READ = ("view_predictionevent",)
REVIEW = ("view_predictionevent", "add_review")
OFFICER = {"actor_type": "service", "actor_id": "loan-desk"}


def url(event: PredictionEvent | uuid.UUID | str) -> str:
    pk = event.pk if isinstance(event, PredictionEvent) else event
    return reverse("ml_audit_api:prediction-reviews", args=[str(pk)])


def api(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def reviewer() -> APIClient:
    return api(make_user("reviewer", *REVIEW))


@pytest.fixture
def reader() -> APIClient:
    return api(make_user("reader", *READ))


# ----------------------------------------------------------------------------- POST


def test_post_appends_a_review_by_the_authenticated_user(
    reviewer: APIClient, prediction: PredictionEvent
) -> None:
    response = reviewer.post(
        url(prediction),
        {
            "action": "override",
            "final_outcome": "approve",
            "reason": "payslip checked",
            "comment": "applicant jane@example.com sent it",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    review = Review.objects.get()
    assert body == {
        "id": str(review.pk),
        "action": "override",
        "final_outcome": "approve",
        "reviewer_type": "user",
        "reviewer_id": "reviewer",
        "reason": "payslip checked",
        "comment": "applicant ***** sent it",
        "created_at": body["created_at"],
        "prediction": str(prediction.pk),
        "redaction": {"policy": review.redaction["policy"], "paths": {"comment": [""]}},
        "trace_id": review.trace_id,
        "span_id": review.span_id,
    }
    assert review.tenant_id == "acme"
    assert (review.reviewer_type, review.reviewer_id) == ("user", "reviewer")


def test_form_encoded_bodies_work_too(reviewer: APIClient, prediction: PredictionEvent) -> None:
    response = reviewer.post(url(prediction), {"action": "escalate", "reason": "unclear"})
    assert response.status_code == 201
    assert Review.objects.get().action == "escalate"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"action": "override"}, {"final_outcome"}),
        ({"action": "override", "final_outcome": None}, {"final_outcome"}),
        ({"action": "confirm", "final_outcome": "approve"}, {"final_outcome"}),
        ({"action": "approve"}, {"action"}),
        ({}, {"action"}),
        ({"action": "confirm", "reason": "r" * 256}, {"reason"}),
        ({"action": "confirm", "comment": "c" * 10_001}, {"comment"}),
        ({"action": "confirm", "comment": "a\x00b"}, {"comment"}),
        ({"action": "confirm", "reason": 5}, set()),  # DRF reads numbers as text: accepted
        ({"action": "confirm", "reviewer_id": "bob", "at": "2020-01-01"}, {"reviewer_id", "at"}),
        ({"action": ["confirm"]}, {"action"}),
        ([{"action": "confirm"}], {"non_field_errors"}),
    ],
)
def test_bad_bodies_are_400_naming_each_field(
    reviewer: APIClient, prediction: PredictionEvent, body: Any, errors: set[str]
) -> None:
    response = reviewer.post(url(prediction), body, format="json")
    if not errors:
        assert response.status_code == 201
        return
    assert response.status_code == 400, response.content
    detail = response.json()
    assert set(detail) == errors
    assert all(isinstance(messages, list) and messages for messages in detail.values())
    assert not Review.objects.exists()


def test_error_messages_say_what_to_do(reviewer: APIClient, prediction: PredictionEvent) -> None:
    body = reviewer.post(url(prediction), {"action": "override"}, format="json").json()
    assert body == {
        "final_outcome": ["is required for an override: the decision that replaces the model's"]
    }
    body = reviewer.post(url(prediction), {"action": "confirm", "by": "x"}, format="json").json()
    assert body == {
        "by": ["Unknown field. A review accepts: action, final_outcome, reason, comment."]
    }


def test_a_body_that_is_no_json_is_400(reviewer: APIClient, prediction: PredictionEvent) -> None:
    response = reviewer.generic("POST", url(prediction), "{not json", "application/json")
    assert response.status_code == 400
    assert "detail" in response.json()
    assert not Review.objects.exists()


def test_a_reason_that_outgrows_its_column_once_redacted_is_400(
    reviewer: APIClient, prediction: PredictionEvent, settings: Any
) -> None:
    settings.ML_AUDIT = {"REDACTION": {"MODE": "hash", "HASH_KEY": "k" * 32}}
    body = {"action": "confirm", "reason": "x" * 240 + " a@b.io"}
    response = reviewer.post(url(prediction), body, format="json")
    assert response.status_code == 400
    assert "once redacted" in response.json()["reason"][0]


@pytest.mark.parametrize(
    ("codenames", "status"),
    [(READ, 403), ((), 403), (("add_review",), 201)],
)
def test_posting_needs_the_add_review_permission(
    prediction: PredictionEvent, codenames: tuple[str, ...], status: int
) -> None:
    client = api(make_user("someone", *codenames))
    response = client.post(url(prediction), {"action": "confirm"}, format="json")
    assert response.status_code == status
    assert Review.objects.count() == (1 if status == 201 else 0)


def test_anonymous_posts_are_refused(prediction: PredictionEvent) -> None:
    response = api(None).post(url(prediction), {"action": "confirm"}, format="json")
    assert response.status_code in (401, 403)
    assert not Review.objects.exists()


def test_a_session_post_needs_its_csrf_token(prediction: PredictionEvent) -> None:
    make_user("session-reviewer", *REVIEW, password="x")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="session-reviewer", password="x")
    response = client.post(url(prediction), {"action": "confirm"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Review.objects.exists()


def test_unknown_predictions_are_404(reviewer: APIClient, prediction: PredictionEvent) -> None:
    assert reviewer.post(url(uuid.uuid4()), {"action": "confirm"}, format="json").status_code == 404
    not_a_uuid = url(prediction).replace(str(prediction.pk), "loan-1")
    assert reviewer.post(not_a_uuid, {"action": "confirm"}, format="json").status_code == 404
    # The prediction is looked up before the body is read: a bad body on a missing one is 404.
    assert reviewer.post(url(uuid.uuid4()), {"action": "nope"}, format="json").status_code == 404
    assert not Review.objects.exists()


def test_another_tenants_prediction_is_404(tenant_scoping: None) -> None:
    globex, acme = predict("g-1", tenant="globex"), predict("a-1", tenant="acme")
    client = api(make_user("acme-reviewer", *REVIEW))
    assert client.post(url(globex), {"action": "confirm"}, format="json").status_code == 404
    assert client.get(url(globex)).status_code == 404
    assert client.post(url(acme), {"action": "confirm"}, format="json").status_code == 201
    assert list(Review.objects.values_list("tenant_id", flat=True)) == ["acme"]


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_writes_are_405(
    reviewer: APIClient, prediction: PredictionEvent, method: str
) -> None:
    response = getattr(reviewer, method)(url(prediction), {"action": "confirm"}, format="json")
    assert response.status_code == 405
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "POST", "HEAD", "OPTIONS"}


def test_unknown_query_parameters_are_400(reviewer: APIClient, prediction: PredictionEvent) -> None:
    response = reviewer.post(url(prediction) + "?as=bob", {"action": "confirm"}, format="json")
    assert response.status_code == 400
    assert "as" in response.json()
    assert not Review.objects.exists()


def test_a_post_costs_a_bounded_number_of_queries(
    reviewer: APIClient, prediction: PredictionEvent
) -> None:
    reviewer.post(url(prediction), {"action": "confirm"}, format="json")  # warm the caches
    with all_queries() as queries:
        response = reviewer.post(url(prediction), {"action": "confirm"}, format="json")
    assert response.status_code == 201
    # The user's permissions, the prediction, the review's INSERT, the access log's INSERT.
    assert len(queries) <= 4, queries
    assert sum(sql.startswith("INSERT") for sql in queries) == 2


# ----------------------------------------------------------------------------- GET


def test_get_lists_reviews_with_both_outcomes(
    reader: APIClient, prediction: PredictionEvent
) -> None:
    first = record_review(prediction, reviewer=OFFICER, action="confirm")
    second = record_review(prediction, reviewer=OFFICER, action="override", final_outcome="approve")
    body = reader.get(url(prediction)).json()
    assert {key: body[key] for key in body if key != "reviews"} == {
        "prediction": str(prediction.pk),
        "prediction_id": "loan-1",
        "decision_outcome": "decline",
        "effective_outcome": "approve",
        "count": 2,
        "truncated": False,
    }
    assert [review["id"] for review in body["reviews"]] == [str(second.pk), str(first.pk)]
    assert body["reviews"][0]["final_outcome"] == "approve"


def test_get_without_reviews(reader: APIClient, prediction: PredictionEvent) -> None:
    body = reader.get(url(prediction)).json()
    assert (body["effective_outcome"], body["count"], body["reviews"]) == ("decline", 0, [])


def test_get_is_cut_at_the_page_limit_but_the_outcome_is_not(
    reader: APIClient, prediction: PredictionEvent, settings: Any
) -> None:
    record_review(prediction, reviewer=OFFICER, action="override", final_outcome="approve")
    for _ in range(3):
        record_review(prediction, reviewer=OFFICER, action="confirm")
    settings.ML_AUDIT = {"API_MAX_PAGE_SIZE": 2}
    body = reader.get(url(prediction)).json()
    assert (body["count"], body["truncated"], body["effective_outcome"]) == (2, True, "approve")


def test_get_needs_the_read_permission(prediction: PredictionEvent) -> None:
    assert api(make_user("nobody")).get(url(prediction)).status_code == 403
    assert api(make_user("writer", "add_review")).get(url(prediction)).status_code == 403


def test_get_in_the_browsable_api_renders(reader: APIClient, prediction: PredictionEvent) -> None:
    response = reader.get(url(prediction), {"format": "api"})
    assert response.status_code == 200
    assert b"effective_outcome" in response.content


def test_every_request_is_access_logged(
    reviewer: APIClient, reader: APIClient, prediction: PredictionEvent
) -> None:
    reviewer.post(url(prediction), {"action": "confirm"}, format="json")
    reviewer.post(url(prediction), {"action": "override"}, format="json")
    reader.post(url(prediction), {"action": "confirm"}, format="json")
    reader.get(url(prediction))
    reader.get(url(uuid.uuid4()))
    rows = AccessLog.objects.filter(endpoint="predictions-reviews").order_by("accessed_at", "id")
    assert [
        (r.username, r.method, r.status_code, r.returned_ids, r.result_count) for r in rows
    ] == [
        ("reviewer", "POST", 201, [str(prediction.pk)], 1),
        ("reviewer", "POST", 400, [], 0),
        ("reader", "POST", 403, [], 0),
        ("reader", "GET", 200, [str(prediction.pk)], 1),
        ("reader", "GET", 404, [], 0),
    ]


# ----------------------------------------------------------------------------- schema


def test_the_openapi_document_describes_both_operations(reader: APIClient) -> None:
    pytest.importorskip("drf_spectacular")
    response = reader.get(
        reverse("ml_audit_api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    document = json.loads(response.content)
    item = document["paths"]["/api/ml-audit/predictions/{id}/reviews/"]
    assert set(item) == {"get", "post"}
    post = item["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReviewInput"
    }
    assert {"201", "400", "401", "403", "404"} <= set(post["responses"])
    assert "200" not in post["responses"]
    schemas = document["components"]["schemas"]
    assert schemas["ReviewInput"]["properties"]["action"]["enum"] == [
        "confirm",
        "override",
        "escalate",
        "contest_received",
        "contest_resolved",
    ]
    assert schemas["ReviewInput"]["additionalProperties"] is False
    assert set(schemas["RecordedReview"]["required"]) >= {"id", "action", "reviewer_id"}
    get = item["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert get == {"$ref": "#/components/schemas/PredictionReviews"}
    try:
        from openapi_spec_validator import validate
    except ImportError:
        return
    validate(document)
