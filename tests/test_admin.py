"""The read-only admin: list, detail, permissions, escaping, and the SVG chart."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth.models import Permission, User
from django.core.paginator import EmptyPage
from django.db import connection
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from ml_audit import charts
from ml_audit.admin import EstimatedCountPaginator, trace_url
from ml_audit.models import AccessLog, Explanation, ModelVersion, PredictionEvent, RequestingActor
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event
from tests.queries import all_queries

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"
TRACE_TEMPLATE = "http://phoenix.local/redirects/traces/{trace_id}"
WHEN = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)


def record(**overrides: Any) -> PredictionEvent:
    kwargs: dict[str, Any] = {
        "model_name": "fraud_detector",
        "model_version": "1.0.0",
        "features": {"age": 42, "income": 100_000, "email": "user@example.com"},
        "output": {"score": 0.87, "is_fraud": True},
        "decision_outcome": "flagged",
        "confidence": 0.87,
        "actor": ActorPayload(
            actor_type="user",
            actor_id="7",
            tenant_id="acme",
            ip_address="203.0.113.9",
            user_agent="curl/8.0-secret-agent",
        ),
        "environment": "prod",
        "timestamp": WHEN,
    }
    kwargs.update(overrides)
    return record_prediction_event(**kwargs)


def change_url(event: PredictionEvent) -> str:
    return reverse("admin:ml_audit_predictionevent_change", args=[event.pk])


def changelist(client: Client, **params: str) -> list[PredictionEvent]:
    response = client.get(reverse("admin:ml_audit_predictionevent_changelist"), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.fixture
def explained() -> PredictionEvent:
    event = record()
    attach_explanation(
        event,
        "shap",
        {"feature_importances": {"age": 0.1, "income": -0.4}},
        "first take",
        generated_at=WHEN,
    )
    attach_explanation(
        event,
        "shap",
        {"feature_importances": {"age": 0.3, "income": -0.5, "tenure": 0.05, "note": "n/a"}},
        "second take",
        generated_at=WHEN + dt.timedelta(minutes=1),
    )
    return event


def staff(*codenames: str) -> User:
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="ml_audit", codename__in=codenames)
    )
    return user


@pytest.fixture
def viewer_client(client: Client) -> Client:
    client.force_login(staff("view_predictionevent", "view_explanation"))
    return client


# ----------------------------------------------------------------------------- list page


def test_list_page_filters_and_search(admin_client: Client) -> None:
    flagged = record()
    failed = record(
        model_version="2.0.0",
        decision_outcome="approved",
        status="failed",
        error_type="ValueError",
        environment="staging",
        actor=ActorPayload(actor_type="service", actor_id="batch", tenant_id="globex"),
        timestamp=WHEN - dt.timedelta(days=400),
    )
    assert {e.pk for e in changelist(admin_client)} == {flagged.pk, failed.pk}
    assert [e.pk for e in changelist(admin_client, status__exact="failed")] == [failed.pk]
    assert [e.pk for e in changelist(admin_client, environment__exact="prod")] == [flagged.pk]
    assert [e.pk for e in changelist(admin_client, tenant_id__exact="globex")] == [failed.pk]
    assert [e.pk for e in changelist(admin_client, decision_outcome__exact="flagged")] == [
        flagged.pk
    ]
    assert [e.pk for e in changelist(admin_client, model__id__exact=str(failed.model_id))] == [
        failed.pk
    ]
    assert [e.pk for e in changelist(admin_client, timestamp__year="2026")] == [flagged.pk]
    assert [e.pk for e in changelist(admin_client, q=failed.prediction_id)] == [failed.pk]
    assert [e.pk for e in changelist(admin_client, q=flagged.trace_id)] == [flagged.pk]
    assert [e.pk for e in changelist(admin_client, q="batch")] == [failed.pk]
    assert changelist(admin_client, q=flagged.prediction_id[:8]) == []  # exact match only


def test_list_page_for_a_view_only_staff_user(viewer_client: Client) -> None:
    event = record()
    response = viewer_client.get(reverse("admin:ml_audit_predictionevent_changelist"))
    assert response.status_code == 200
    assert event.prediction_id in response.content.decode()


def test_paginator_counts_exactly_without_an_estimate() -> None:
    record()
    paginator = EstimatedCountPaginator(PredictionEvent.objects.all(), 10)
    assert paginator.count == 1


@pytest.mark.postgres
def test_paginator_uses_the_postgres_estimate_for_unfiltered_lists() -> None:
    record()
    record(prediction_id="second")
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {PredictionEvent._meta.db_table}")

    class Eager(EstimatedCountPaginator):
        estimate_threshold = 0

    assert Eager(PredictionEvent.objects.all(), 10)._estimate() == 2
    assert Eager(PredictionEvent.objects.filter(prediction_id="second"), 10)._estimate() is None
    assert Eager(PredictionEvent.objects.filter(prediction_id="second"), 10).count == 1


# ----------------------------------------------------------------------------- read-only


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (PredictionEvent, "predictionevent"),
        (Explanation, "explanation"),
        (ModelVersion, "modelversion"),
        (RequestingActor, "requestingactor"),
        (AccessLog, "accesslog"),
    ],
)
def test_no_add_change_or_delete_even_for_superusers(
    admin_client: Client, model: Any, name: str
) -> None:
    event = record()
    attach_explanation(event, "shap", {"age": 1.0})
    AccessLog.objects.create(
        accessed_at=WHEN,
        username="auditor",
        endpoint="predictions-list",
        method="GET",
        path="/api/ml-audit/predictions/",
        status_code=200,
        result_count=1,
    )
    obj = model.objects.first()
    assert obj is not None
    assert admin_client.get(reverse(f"admin:ml_audit_{name}_add")).status_code == 403
    assert admin_client.post(reverse(f"admin:ml_audit_{name}_add"), {}).status_code == 403
    change = reverse(f"admin:ml_audit_{name}_change", args=[obj.pk])
    assert admin_client.get(change).status_code == 200  # viewable, read-only
    assert admin_client.post(change, {}).status_code == 403
    delete = reverse(f"admin:ml_audit_{name}_delete", args=[obj.pk])
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_no_bulk_delete_action(admin_client: Client) -> None:
    event = record()
    user = User.objects.get(is_superuser=True)
    request = RequestFactory().get("/")
    request.user = user
    for model in (PredictionEvent, Explanation, ModelVersion, RequestingActor, AccessLog):
        assert "delete_selected" not in django_admin.site._registry[model].get_actions(request)
    response = admin_client.post(
        reverse("admin:ml_audit_predictionevent_changelist"),
        {"action": "delete_selected", "_selected_action": [str(event.pk)], "post": "yes"},
    )
    assert response.status_code in {200, 302}
    assert PredictionEvent.objects.filter(pk=event.pk).exists()


# ----------------------------------------------------------------------------- detail page


def test_detail_shows_features_output_redaction_chart_and_revisions(
    admin_client: Client, explained: PredictionEvent
) -> None:
    response = admin_client.get(change_url(explained))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="ml-audit-features"' in html
    assert "<td>age</td><td><code>42</code></td>" in html
    assert "<td>email</td>" in html
    assert "user@example.com" not in html  # redacted before storage
    assert "&quot;is_fraud&quot;: true" in html  # pretty JSON output
    assert 'class="ml-audit-redaction"' in html
    assert "<code>email</code>" in html
    assert explained.redaction["policy"] in html
    # The current explanation (revision 2) is charted: three numeric attributions.
    assert html.count('<svg class="ml-audit-chart"') == 1
    assert html.count('class="ml-audit-bar ') == 3
    labels = re.findall(r'class="ml-audit-label"[^>]*>([^<]*)<', html)
    assert labels == ["income", "age", "tenure"]
    assert html.count("ml-audit-negative") == 1
    assert "second take" in html
    # Earlier revisions: revision 1 with its summary.
    assert 'class="ml-audit-revisions"' in html
    assert "first take" in html


def test_detail_without_explanation_has_no_chart(admin_client: Client) -> None:
    html = admin_client.get(change_url(record())).content.decode()
    assert "ml-audit-chart" not in html
    assert "No explanation attached." in html


def test_trace_link_when_template_is_set(admin_client: Client) -> None:
    event = record()
    assert event.trace_id
    with override_settings(ML_AUDIT={"TRACE_URL_TEMPLATE": TRACE_TEMPLATE}):
        html = admin_client.get(change_url(event)).content.decode()
    expected = TRACE_TEMPLATE.format(trace_id=event.trace_id)
    assert f'<a href="{expected}" target="_blank" rel="noopener noreferrer">View trace' in html


def test_no_trace_link_without_template(admin_client: Client) -> None:
    event = record()
    html = admin_client.get(change_url(event)).content.decode()
    assert "View trace" not in html
    assert "phoenix.local" not in html


def test_trace_url_helper() -> None:
    assert trace_url("abc") is None
    with override_settings(ML_AUDIT={"TRACE_URL_TEMPLATE": TRACE_TEMPLATE}):
        assert trace_url("") is None
        assert trace_url("abc") == "http://phoenix.local/redirects/traces/abc"


def test_request_context_needs_the_requesting_actor_permission(client: Client) -> None:
    event = record()
    client.force_login(staff("view_predictionevent"))
    html = client.get(change_url(event)).content.decode()
    assert "Request context" not in html
    assert "curl/8.0-secret-agent" not in html
    assert "203.0.113.9" not in html

    other = User.objects.create_user("auditor", password="x", is_staff=True)
    other.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="ml_audit",
            codename__in=["view_predictionevent", "view_requestingactor"],
        )
    )
    client.force_login(other)
    html = client.get(change_url(event)).content.decode()
    assert "Request context" in html
    assert "curl/8.0-secret-agent" in html
    assert "203.0.113.9" in html


def test_view_only_staff_user_sees_detail_but_cannot_change(viewer_client: Client) -> None:
    event = record()
    assert viewer_client.get(change_url(event)).status_code == 200
    assert viewer_client.post(change_url(event), {}).status_code == 403
    add = reverse("admin:ml_audit_predictionevent_add")
    assert viewer_client.get(add).status_code == 403
    delete = reverse("admin:ml_audit_predictionevent_delete", args=[event.pk])
    assert viewer_client.post(delete, {"post": "yes"}).status_code == 403


def test_values_are_escaped(admin_client: Client) -> None:
    event = record(features={XSS: XSS, "plain": "<b>bold</b>"}, output={"html": XSS})
    attach_explanation(event, "shap", {XSS: 0.9, "other": -0.2}, summary_text=XSS)
    html = admin_client.get(change_url(event)).content.decode()
    assert XSS not in html
    assert "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


# ----------------------------------------------------------------------------- charts.py


def test_attributions_sorted_by_magnitude_and_cut_to_top_ten() -> None:
    payload = {"shap_values": {f"f{i}": (-1) ** i * i for i in range(15)}}
    items = charts.attributions(payload)
    assert [name for name, _ in items] == [f"f{i}" for i in range(14, 4, -1)]
    assert items[0] == ("f14", 14.0)
    assert items[1] == ("f13", -13.0)
    assert len(charts.attributions(payload, top=3)) == 3


def test_attributions_payload_shapes_and_ignored_values() -> None:
    flat = {"a": 1, "b": -2.5, "c": "text", "d": True, "e": None, "f": float("nan"), "g": [1]}
    assert charts.attributions(flat) == [("b", -2.5), ("a", 1.0)]
    assert charts.attributions({"feature_importances": {"x": 0.2}, "base_value": 9}) == [("x", 0.2)]
    # A named key that is not a mapping: nothing to chart (not the payload's other numbers).
    assert charts.attributions({"shap_values": [0.1, 0.2], "base_value": 0.5}) == []
    assert charts.attributions({}) == []
    assert charts.attributions(None) == []
    assert charts.attributions([1, 2]) == []


def test_chart_empty_payload_gives_no_chart() -> None:
    assert charts.attribution_chart({}) == ""
    assert charts.attribution_chart({"a": "not a number"}) == ""


def test_chart_bars_colours_and_axis() -> None:
    svg = str(charts.attribution_chart({"up": 2.0, "down": -1.0}))
    assert svg.startswith("<svg")
    assert svg.count('class="ml-audit-bar ') == 2
    assert svg.count(f'fill="{charts.POSITIVE_COLOUR}"') == 1
    assert svg.count(f'fill="{charts.NEGATIVE_COLOUR}"') == 1
    assert "<script" not in svg
    # Positive bars start at the zero axis; the negative bar ends on it.
    axis = float(re.search(r'<line x1="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    up = re.search(r'ml-audit-positive" x="([\d.]+)"[^>]*width="([\d.]+)"', svg)
    down = re.search(r'ml-audit-negative" x="([\d.]+)"[^>]*width="([\d.]+)"', svg)
    assert up is not None
    assert down is not None
    assert float(up.group(1)) == pytest.approx(axis)
    assert float(down.group(1)) + float(down.group(2)) == pytest.approx(axis, abs=0.2)
    assert float(up.group(2)) == pytest.approx(2 * float(down.group(2)), abs=0.2)


def test_chart_labels_are_escaped() -> None:
    svg = str(charts.attribution_chart({XSS: 1.0, 'a"b': 0.5}))
    assert XSS not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert 'a"b' not in svg
    assert "a&quot;b" in svg


def test_access_log_list(admin_client: Client) -> None:
    AccessLog.objects.create(
        accessed_at=WHEN,
        username="auditor-<b>",
        endpoint="predictions-list",
        method="GET",
        path="/api/ml-audit/predictions/",
        status_code=200,
        result_count=3,
    )
    response = admin_client.get(reverse("admin:ml_audit_accesslog_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "auditor-&lt;b&gt;" in html
    assert "predictions-list" in html


# ----------------------------------------------------------------------------- large tables


def _changelist_response(client: Client, **params: str) -> Any:
    response = client.get(reverse("admin:ml_audit_predictionevent_changelist"), params)
    assert response.status_code == 200
    return response


def test_search_is_exact_and_index_friendly(admin_client: Client) -> None:
    first = record(prediction_id="Pred-Mixed-Case")
    other = record(
        prediction_id="other",
        actor=ActorPayload(actor_type="service", actor_id="Pred-Mixed-Case", tenant_id="t"),
    )
    # The prediction id matches exactly (case included); so does an actor id.
    assert {e.pk for e in changelist(admin_client, q="Pred-Mixed-Case")} == {first.pk, other.pk}
    assert changelist(admin_client, q="pred-mixed-case") == []
    assert changelist(admin_client, q="Pred-Mixed") == []
    # A trace id in any case finds its prediction.
    assert [e.pk for e in changelist(admin_client, q=first.trace_id.upper())] == [first.pk]
    assert [e.pk for e in changelist(admin_client, q=f"  {first.trace_id}  ")] == [first.pk]
    # No UPPER() around a column (Django's "=field" search): each term stays an index lookup.
    with all_queries() as queries:
        changelist(admin_client, q=first.trace_id)
    assert queries
    assert not any("UPPER(" in sql for sql in queries)


def test_value_filters_offer_recent_values_and_accept_any(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ml_audit.admin import RecentValuesFilter

    old = record(
        prediction_id="old", decision_outcome="ancient", timestamp=WHEN - dt.timedelta(days=9)
    )
    record(prediction_id="new-1", decision_outcome="flagged")
    record(prediction_id="new-2", decision_outcome="", environment="staging")
    monkeypatch.setattr(RecentValuesFilter, "recent", 2)

    def offered(response: Any, title: str) -> list[str]:
        (spec,) = [f for f in response.context["cl"].filter_specs if f.title == title]
        return [choice["display"] for choice in spec.choices(response.context["cl"])]

    response = _changelist_response(admin_client)
    assert offered(response, "decision outcome") == ["All", "(empty)", "flagged"]
    assert offered(response, "environment") == ["All", "prod", "staging"]
    # A value beyond the latest rows is still a filter, and is listed once selected.
    response = _changelist_response(admin_client, decision_outcome="ancient")
    assert [e.pk for e in response.context["cl"].result_list] == [old.pk]
    assert "ancient" in offered(response, "decision outcome")
    # The empty value is a value.
    response = _changelist_response(admin_client, decision_outcome="")
    assert [e.prediction_id for e in response.context["cl"].result_list] == ["new-2"]
    # One query reads the values of all three filters.
    with all_queries() as queries:
        _changelist_response(admin_client)
    assert sum("LIMIT 2" in sql and '"tenant_id"' in sql for sql in queries) == 1


def test_date_drill_down_offers_every_period_between_first_and_last(
    admin_client: Client,
) -> None:
    record(prediction_id="a", timestamp=dt.datetime(2024, 11, 30, 23, 0, tzinfo=dt.UTC))
    record(prediction_id="b", timestamp=dt.datetime(2026, 2, 2, 1, 0, tzinfo=dt.UTC))
    record(prediction_id="c", timestamp=dt.datetime(2026, 4, 10, 1, 0, tzinfo=dt.UTC))

    def choices(**params: str) -> list[str]:
        response = _changelist_response(admin_client, **params)
        html = response.content.decode()
        block = html[html.index('class="toplinks"') :]
        block = block[: block.index("</nav>")]
        return re.findall(r'<a href="\?[^"]*">([^<]+)</a>', block)

    assert choices() == ["2024", "2025", "2026"]  # 2025 holds nothing, and is offered
    assert choices(timestamp__year="2026") == ["February 2026", "March 2026", "April 2026"]
    # In the project's time zone (UTC in the tests): the 2024 prediction is on 30 November.
    assert choices(timestamp__year="2024") == ["November 2024"]


def test_periods_helper_and_the_queryset_in_another_time_zone() -> None:
    from ml_audit.admin import _periods, _PeriodsQuerySet

    assert _periods(dt.date(2025, 11, 5), dt.date(2026, 2, 1), "month") == [
        dt.date(2025, 11, 1),
        dt.date(2025, 12, 1),
        dt.date(2026, 1, 1),
        dt.date(2026, 2, 1),
    ]
    assert _periods(dt.date(2026, 2, 27), dt.date(2026, 3, 1), "day") == [
        dt.date(2026, 2, 27),
        dt.date(2026, 2, 28),
        dt.date(2026, 3, 1),
    ]
    record(prediction_id="late", timestamp=dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC))
    queryset = _PeriodsQuerySet(PredictionEvent)
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    assert queryset.datetimes("timestamp", "year", tzinfo=tokyo) == [
        dt.datetime(2027, 1, 1, tzinfo=tokyo)
    ]
    assert queryset.datetimes("timestamp", "day", order="DESC") == [
        dt.datetime(2026, 12, 31, tzinfo=dt.UTC)
    ]
    assert queryset.none().datetimes("timestamp", "year") == []
    # Kinds the drill-down does not use keep Django's answer.
    assert queryset.datetimes("timestamp", "hour") == [dt.datetime(2026, 12, 31, 23, tzinfo=dt.UTC)]


@pytest.mark.postgres
def test_paginator_counts_filtered_lists_up_to_a_limit_then_estimates() -> None:
    for n in range(5):
        record(prediction_id=f"p{n}", environment="prod" if n < 4 else "staging")
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {PredictionEvent._meta.db_table}")

    class Small(EstimatedCountPaginator):
        filtered_count_limit = 3

    few = Small(PredictionEvent.objects.filter(environment="staging"), 10)
    assert few.count == 1
    assert few.counted_exactly()
    many = Small(PredictionEvent.objects.filter(environment="prod").order_by("-timestamp"), 2)
    assert many.count >= 4  # the planner's estimate, at least the limit + 1
    assert not many.counted_exactly()
    # Pages do not trust the estimate: they read one row more.
    page = many.page(2)
    assert len(page.object_list) == 2
    assert not page.has_next()
    with pytest.raises(EmptyPage):
        many.page(3)
