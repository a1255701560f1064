"""The reviews on the admin prediction page: the list, the effective outcome, and the form that
appends a review (the only write), behind ``ml_audit.add_review``, CSRF and the tenant scope."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from ml_audit.decision_models import Review
from ml_audit.models import AccessLog, PredictionEvent
from ml_audit.oversight import record_review
from tests.oversight.conftest import make_user, predict
from tests.queries import all_queries

pytestmark = pytest.mark.django_db

VIEW = ("view_predictionevent",)
REVIEWER = ("view_predictionevent", "add_review")
XSS = "<script>alert(1)</script>"


def change_url(event: PredictionEvent) -> str:
    return reverse("admin:ml_audit_predictionevent_change", args=[event.pk])


def review_url(event: PredictionEvent) -> str:
    return reverse("admin:ml_audit_predictionevent_review", args=[event.pk])


def login(client: Client, username: str, *codenames: str) -> Client:
    client.force_login(make_user(username, *codenames, staff=True))
    return client


def form(**values: str) -> dict[str, str]:
    data = {
        "review-action": "",
        "review-final_outcome": "",
        "review-reason": "",
        "review-comment": "",
    }
    data.update({f"review-{name}": value for name, value in values.items()})
    return data


def test_the_page_lists_reviews_under_the_effective_outcome(
    client: Client, prediction: PredictionEvent
) -> None:
    record_review(prediction, reviewer=make_user("alice"), action="confirm", reason="fine")
    record_review(
        prediction,
        reviewer={"actor_type": "service", "actor_id": "desk"},
        action="override",
        final_outcome="approve",
        reason=XSS,
        comment="call jane@example.com\nsecond line",
    )
    page = login(client, "viewer", *VIEW).get(change_url(prediction))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Effective outcome: <strong><code>approve</code></strong>" in text
    assert "the model decided <code>decline</code>" in text
    assert "alice" in text
    assert "desk" in text
    assert "Override" in text
    assert "Confirm" in text
    assert "call *****<br>second line" in text
    assert "jane@example.com" not in text
    assert XSS not in text
    assert "&lt;script&gt;" in text
    # A viewer gets the list, not the form.
    assert "Add review" not in text
    assert "review-action" not in text


def test_without_reviews_the_effective_outcome_is_the_models(
    client: Client, prediction: PredictionEvent
) -> None:
    text = login(client, "viewer", *VIEW).get(change_url(prediction)).content.decode()
    assert "No reviews yet." in text
    assert "Effective outcome: <strong><code>decline</code></strong>, the model's decision." in text


def test_a_reviewer_gets_the_form_posting_to_the_review_url(
    client: Client, prediction: PredictionEvent
) -> None:
    text = login(client, "reviewer", *REVIEWER).get(change_url(prediction)).content.decode()
    assert f'formaction="{review_url(prediction)}"' in text
    assert 'name="review-action"' in text
    assert 'name="review-comment"' in text
    assert 'value="contest_received"' in text
    # Inside the page's own form, which carries the CSRF token.
    form_html = text.split('id="predictionevent_form"', 1)[1].split("</form>", 1)[0]
    assert "csrfmiddlewaretoken" in form_html
    assert 'name="review-action"' in form_html


def test_posting_appends_a_review_by_the_signed_in_user_and_redirects(
    client: Client, prediction: PredictionEvent
) -> None:
    login(client, "reviewer", *REVIEWER)
    response = client.post(
        review_url(prediction),
        form(
            action="override",
            final_outcome="approve",
            reason="payslip checked",
            comment="mail jane@example.com",
            reviewer_id="someone-else",
        )
        | {"review-reviewer_type": "service"},
    )
    assert response.status_code == 302
    assert response["Location"] == change_url(prediction)
    review = Review.objects.get()
    assert (review.reviewer_type, review.reviewer_id) == ("user", "reviewer")
    assert (review.action, review.final_outcome, review.reason) == (
        "override",
        "approve",
        "payslip checked",
    )
    assert review.comment == "mail *****"
    page = client.get(response["Location"]).content.decode()
    assert "Review recorded: Override to &#x27;approve&#x27;." in page
    assert "Effective outcome: <strong><code>approve</code></strong>" in page


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"action": "override"}, "is required for an override"),
        ({"action": "confirm", "final_outcome": "approve"}, "only an override carries"),
        ({"action": "approve"}, "Select a valid choice"),
        ({"action": ""}, "This field is required"),
        ({"action": "confirm", "reason": "r" * 256}, "at most 255 characters"),
        ({"action": "confirm", "comment": "a\x00b"}, "Null characters are not allowed"),
    ],
)
def test_bad_input_is_shown_with_the_form_and_nothing_is_written(
    client: Client, prediction: PredictionEvent, values: dict[str, str], error: str
) -> None:
    login(client, "reviewer", *REVIEWER)
    response = client.post(review_url(prediction), form(**values))
    assert response.status_code == 200
    text = response.content.decode()
    assert error in text
    assert "Please correct the errors below." in text
    assert 'class="errorlist' in text
    assert not Review.objects.exists()


def test_a_reason_too_long_once_redacted_is_a_form_error(
    client: Client, prediction: PredictionEvent, settings: Any
) -> None:
    settings.ML_AUDIT = {"REDACTION": {"MODE": "hash", "HASH_KEY": "k" * 32}}
    login(client, "reviewer", *REVIEWER)
    response = client.post(
        review_url(prediction), form(action="confirm", reason="x" * 240 + " a@b.io")
    )
    assert response.status_code == 200
    assert "once redacted; the limit is 255" in response.content.decode()
    assert not Review.objects.exists()


def test_the_review_page_shows_the_form_on_get(client: Client, prediction: PredictionEvent) -> None:
    response = login(client, "reviewer", *REVIEWER).get(review_url(prediction))
    assert response.status_code == 200
    text = response.content.decode()
    assert 'name="review-action"' in text
    assert "csrfmiddlewaretoken" in text
    assert "formaction" not in text  # its own form here
    assert "loan-1" in text


@pytest.mark.parametrize("codenames", [VIEW, ("add_review",)])
def test_posting_needs_view_and_add_review(
    client: Client, prediction: PredictionEvent, codenames: tuple[str, ...]
) -> None:
    login(client, "clerk", *codenames)
    response = client.post(review_url(prediction), form(action="confirm"))
    assert response.status_code == 403
    assert client.get(review_url(prediction)).status_code == 403
    assert not Review.objects.exists()


def test_anonymous_users_are_sent_to_the_login_page(prediction: PredictionEvent) -> None:
    response = Client().post(review_url(prediction), form(action="confirm"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
    assert not Review.objects.exists()


def test_the_csrf_token_is_required(prediction: PredictionEvent) -> None:
    client = login(Client(enforce_csrf_checks=True), "reviewer", *REVIEWER)
    assert client.post(review_url(prediction), form(action="confirm")).status_code == 403
    assert not Review.objects.exists()
    page = client.get(change_url(prediction)).content.decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None
    token = match.group(1)
    response = client.post(
        review_url(prediction), form(action="confirm") | {"csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert Review.objects.count() == 1


def test_another_tenants_prediction_cannot_be_reviewed(
    client: Client, tenant_scoping: None
) -> None:
    globex = predict("globex-1", tenant="globex")
    acme = predict("acme-1", tenant="acme")
    login(client, "acme-reviewer", *REVIEWER)
    assert client.post(review_url(globex), form(action="confirm")).status_code == 404
    assert client.get(change_url(globex)).status_code == 302  # "does not exist": the list
    assert client.post(review_url(acme), form(action="confirm")).status_code == 302
    assert list(Review.objects.values_list("tenant_id", flat=True)) == ["acme"]


def test_unknown_or_malformed_ids_are_404(client: Client, prediction: PredictionEvent) -> None:
    login(client, "reviewer", *REVIEWER)
    base = review_url(prediction).replace(str(prediction.pk), "{}")
    for bad in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "a/b"):
        assert client.post(base.format(bad), form(action="confirm")).status_code == 404
    assert not Review.objects.exists()


def test_the_change_view_itself_still_refuses_writes(
    admin_client: Client, prediction: PredictionEvent
) -> None:
    response = admin_client.post(change_url(prediction), form(action="confirm"))
    assert response.status_code == 403
    assert not Review.objects.exists()


def test_review_requests_are_access_logged(client: Client, prediction: PredictionEvent) -> None:
    login(client, "reviewer", *REVIEWER)
    client.get(review_url(prediction))
    client.post(review_url(prediction), form(action="confirm"))
    client.post(review_url(prediction), form(action="override"))
    rows = list(
        AccessLog.objects.filter(endpoint="admin-prediction-review").order_by("accessed_at", "id")
    )
    assert [(row.method, row.status_code) for row in rows] == [
        ("GET", 200),
        ("POST", 302),
        ("POST", 200),
    ]
    assert rows[0].returned_ids == [str(prediction.pk)]
    assert {row.username for row in rows} == {"reviewer"}


def test_the_page_reads_reviews_in_one_query_whatever_their_number(
    client: Client, prediction: PredictionEvent
) -> None:
    login(client, "reviewer", *REVIEWER)
    client.get(change_url(prediction))  # warm caches (content types, sessions)

    def page_queries() -> list[str]:
        with all_queries() as queries:
            assert client.get(change_url(prediction)).status_code == 200
        return queries

    before = page_queries()
    for i in range(6):
        action = "override" if i % 2 else "confirm"
        record_review(
            prediction,
            reviewer={"actor_type": "user", "actor_id": f"u{i}"},
            action=action,
            final_outcome="approve" if action == "override" else None,
        )
    after = page_queries()
    assert len(after) == len(before)
    assert sum('"ml_audit_review"' in sql for sql in after) == 1
