"""The read side's fast paths give what the slow ones gave.

* :mod:`ml_audit.api.rows` builds the same dicts as ``PredictionEventSerializer``, reviews,
  outcomes, effective outcome and reason codes included;
* :class:`ml_audit.api.renderers.AuditJSONRenderer` writes the same bytes as DRF's renderer;
* the FilterSet is skipped only when no filter is named, and its form class is built once;
* the one-query detail is used only when no permission class looks at objects;
* page-number mode counts a large unfiltered PostgreSQL table by estimate, in one query.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
import zoneinfo
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Prefetch
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from ml_audit import paginators
from ml_audit.api import filters, pagination, permissions, renderers, rows
from ml_audit.api.serializers import PredictionEventSerializer
from ml_audit.decision_models import Outcome, Review
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.services import ActorPayload, attach_explanation

from ..conftest import is_postgres
from . import decisions
from .test_api import PREDICTIONS, T0, TRACE, detail, make_user, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def auditor() -> User:
    return make_user("auditor", "view_predictionevent", "view_requestingactor")


@pytest.fixture
def variety() -> list[PredictionEvent]:
    """Predictions covering every shape a row can take."""
    plain = record(prediction_id="plain", trace_id=TRACE)
    first = attach_explanation(plain, "shap", {"amount": 0.1}, "first")
    second = attach_explanation(plain, "shap", {"amount": 0.2}, "second", method_version="0.45")
    decisions.reason_codes(first, "R9")
    decisions.reason_codes(second, "R1", "R2")
    minute = dt.timedelta(minutes=1)
    decisions.review(plain, "confirm", at=T0 + minute)
    decisions.review(plain, "override", final_outcome="review", at=T0 + 2 * minute)
    # Two reviews at the same instant: their ids order them, in both paths.
    decisions.review(plain, "override", final_outcome="fraud", at=T0 + 3 * minute, reason="doc")
    decisions.review(plain, "escalate", at=T0 + 3 * minute, comment="Zo\u00eb \u2028 seen")
    decisions.outcome(plain, {"defaulted": False}, observed_at=T0 + 5 * minute, source="crm")
    decisions.outcome(plain, "repaid", observed_at=T0 + 9 * minute, source="ledger")
    decisions.outcome(
        plain, 18446744073709551616, observed_at=T0 + 9 * minute, recorded_at=T0 + 10 * minute
    )
    decisions.outcome(plain, 0, observed_at=T0 + 7 * minute)
    no_actor = record(
        prediction_id="no-actor",
        actor=None,
        confidence=None,
        output=None,
        timestamp=T0 + dt.timedelta(microseconds=123456),
    )
    decisions.review(no_actor, "contest_received", at=T0, reviewer=("subject", "s-1"))
    decisions.review(
        no_actor, "override", final_outcome="declined", at=T0 + dt.timedelta(microseconds=7)
    )
    about = decisions.about("ann", prediction_id="about-ann", timestamp=T0 - dt.timedelta(days=1))
    stale = attach_explanation(about, "shap", {"age": 0.3})
    decisions.reason_codes(stale, "R5")
    attach_explanation(about, "shap", {"age": 0.4})  # no codes for the current revision
    decisions.outcome(about, [1, 2.5, "x"], observed_at=T0)
    odd = record(
        prediction_id="odd",
        trace_id="req-\u00e9t\u00e9",  # a correlation id, no trace id
        features={"name": "Zo\u00eb", "nested": {"list": [1, 2.5, None, True]}},
        output={"label": "line\u2028separator", "score": 0.25},
        decision_outcome="",
        status="failed",
        error_type="ValueError",
        error_message="bad input",
        latency_ms=12.5,
        metadata={"k": "v"},
        actor=ActorPayload("service", "batch", tenant_id="", ip_address="2001:db8::1"),
        timestamp=T0 - dt.timedelta(days=400),
    )
    attach_explanation(odd, "reason_codes", {"codes": ["R1"]})
    return [plain, no_actor, odd, about]


def serializer_data(show_request_context: bool, *, prefetch: bool = True) -> list[dict[str, Any]]:
    """What the nested ModelSerializer gives (the views' former path); without ``prefetch``,
    every related row is read by its manager, one query at a time."""
    queryset = PredictionEvent.objects.select_related("model", "actor").order_by(
        "-timestamp", "-id"
    )
    if prefetch:
        queryset = queryset.prefetch_related(  # type: ignore[type-var]
            Prefetch(
                "explanations",
                Explanation.objects.select_related("reason_codes").order_by("revision"),
            ),
            Prefetch("reviews", Review.objects.order_by("-created_at", "-id")),
            Prefetch("outcomes", Outcome.objects.order_by("-observed_at", "-recorded_at", "-id")),
        )
    context = {"show_request_context": show_request_context}
    return [
        dict(row) for row in PredictionEventSerializer(queryset, many=True, context=context).data
    ]


def fast_data(show_request_context: bool) -> list[dict[str, Any]]:
    values = list(
        rows.prediction_values("default", show_request_context=show_request_context).order_by(
            "-timestamp", "-id"
        )
    )
    related = rows.related_of("default", [row["id"] for row in values])
    return rows.serialize_predictions(values, related, show_request_context=show_request_context)


# ----------------------------------------------------------------------------- rows


def test_values_templates_are_shared_and_never_touched_by_a_request() -> None:
    first = record(model_name="kept")
    record(model_name="other")
    narrowed = rows.prediction_values("default", show_request_context=False).filter(
        model__model_name="kept"
    )
    assert [row["id"] for row in narrowed] == [first.pk]
    # The next request starts from all predictions again, on the alias it names.
    again = rows.prediction_values("default", show_request_context=False)
    assert again is not narrowed
    assert again._result_cache is None
    assert len(list(again)) == 2
    assert again.db == "default"
    template = rows._values_template("default", False)
    assert template._result_cache is None  # only clones were ever evaluated
    assert rows._values_template("default", False) is template
    decisions.review(first, "confirm")
    assert set(rows.related_of("default", [first.pk])) == {first.pk}
    for related in rows._related_templates("default"):
        assert related._result_cache is None
        assert related.db == "default"
    assert rows._related_templates("default") is rows._related_templates("default")
    shown = rows.prediction_values("default", show_request_context=True)
    assert "client_ip" in shown.query.values_select
    assert "client_ip" not in template.query.values_select


@pytest.mark.usefixtures("variety")
@pytest.mark.parametrize("show", [False, True])
def test_rows_equal_the_serializer_keys_order_and_values(show: bool, settings: Any) -> None:
    settings.ML_AUDIT = {"TRACE_URL_TEMPLATE": "https://apm.example/t/{trace_id}"}

    expected = serializer_data(show)
    actual = fast_data(show)

    assert actual == expected
    assert [list(row) for row in actual] == [list(row) for row in expected]
    by_id = {row["prediction_id"]: row for row in actual}
    assert by_id["plain"]["trace_url"] == f"https://apm.example/t/{TRACE}"
    assert by_id["plain"]["explanation"]["revision"] == 2
    assert by_id["plain"]["explanation_revisions"] == 2
    assert by_id["no-actor"]["actor"] is None
    assert by_id["no-actor"]["explanation"] is None
    assert ("client_ip" in by_id["odd"]) is show
    # The human side: the current revision's codes, reviews and outcomes latest first.
    plain = by_id["plain"]
    assert [code["code"] for code in plain["explanation"]["reason_codes"]] == ["R1", "R2"]
    assert by_id["about-ann"]["explanation"]["reason_codes"] is None  # only revision 1 had
    assert by_id["odd"]["explanation"]["reason_codes"] is None
    assert [review["action"] for review in plain["reviews"]][2:] == ["override", "confirm"]
    assert (plain["decision_outcome"], plain["effective_outcome"]) == ("clean", "fraud")
    assert by_id["no-actor"]["effective_outcome"] == "declined"
    assert by_id["odd"]["effective_outcome"] == ""
    assert [o["value"] for o in plain["outcomes"]] == [
        18446744073709551616,
        "repaid",
        0,
        {"defaulted": False},
    ]
    assert plain["outcome"] == plain["outcomes"][0]
    assert by_id["odd"]["outcome"] is None
    assert by_id["odd"]["outcomes"] == by_id["odd"]["reviews"] == []
    assert by_id["about-ann"]["subject_ref"] == decisions.subject_ref("ann")
    assert plain["subject_ref"] == ""


@pytest.mark.usefixtures("variety")
def test_the_serializer_reads_the_same_without_prefetching() -> None:
    # Outside the views (a project's own use of the serializer) the related managers query in
    # their models' default order: the order the rows give.
    assert serializer_data(False, prefetch=False) == fast_data(False)


@pytest.mark.usefixtures("variety")
def test_rows_follow_the_current_time_zone_and_drf_datetime_format(settings: Any) -> None:
    with timezone.override(zoneinfo.ZoneInfo("America/St_Johns")):
        assert fast_data(True) == serializer_data(True)
        assert fast_data(False)[0]["timestamp"].endswith("-03:30")
    settings.REST_FRAMEWORK = {"DATETIME_FORMAT": "%d.%m.%Y %H:%M"}
    assert fast_data(False) == serializer_data(False)
    assert fast_data(False)[0]["timestamp"] == "03.03.2026 10:00"


@pytest.mark.usefixtures("variety")
def test_api_answers_equal_the_serializer(auditor: User, settings: Any) -> None:
    settings.ML_AUDIT = {"TRACE_URL_TEMPLATE": "https://apm.example/t/{trace_id}"}
    api = APIClient()
    api.force_authenticate(auditor)
    expected = json.loads(JSONRenderer().render(serializer_data(True)))

    listed = api.get(PREDICTIONS).json()["results"]
    one_by_one = [api.get(detail(row["id"])).json() for row in expected]

    assert listed == expected
    assert one_by_one == expected


# ----------------------------------------------------------------------------- renderer


RENDERED: list[Any] = [
    {"results": [{"id": uuid.UUID(int=7), "when": dt.datetime(2026, 3, 3, 10, tzinfo=dt.UTC)}]},
    {"naive": dt.datetime(2026, 3, 3, 10, 0, 0, 5), "day": dt.date(2026, 3, 3)},
    {"time": dt.time(10, 30), "span": dt.timedelta(seconds=90), "money": decimal.Decimal("1.5")},
    {"text": 'Zo\u00eb \u2028 \u2029 \u00e9\u6f22 \U0001f600 "quoted" \\ \n\t'},
    {"numbers": [0, -1, 2**63 - 1, 0.1, 1.5, 123456.789, None, True, False]},
    ["a", ("tuple",), {"deep": {"er": [{}]}}],
    {"big": 2**70},  # beyond orjson: DRF's path
    {1: "non-string key"},  # beyond orjson: DRF's path
    "plain string",
    [],
]


@pytest.mark.parametrize("data", RENDERED)
def test_renderer_writes_what_drf_writes(data: Any) -> None:
    assert renderers.AuditJSONRenderer().render(data) == JSONRenderer().render(data)


def test_renderer_writes_every_float_as_the_same_number() -> None:
    floats = [1e-05, 2.5e-07, 1e16, 1e22, 5e-324, 1.7976931348623157e308, -0.0, 1 / 3]

    fast = renderers.AuditJSONRenderer().render(floats)

    assert json.loads(fast) == floats
    assert fast != JSONRenderer().render(floats)  # 0.00001, not 1e-05: same number


def test_renderer_hands_indent_to_drf() -> None:
    data = {"a": [1, 2]}
    media = "application/json; indent=4"

    rendered = renderers.AuditJSONRenderer().render(data, media)

    assert rendered == JSONRenderer().render(data, media)
    assert b"\n    " in rendered


def test_renderer_uses_orjson_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert renderers.orjson_available()  # the test environment installs the fast extra
    calls: list[Any] = []
    real = renderers.orjson.dumps

    def spy(*args: Any, **kwargs: Any) -> bytes:
        calls.append(args[0])
        return real(*args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(renderers.orjson, "dumps", spy)
    renderers.AuditJSONRenderer().render({"x": 1})
    assert calls == [{"x": 1}]


def test_renderer_without_orjson_is_drfs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(renderers, "orjson", None)

    assert not renderers.orjson_available()
    for data in RENDERED:
        assert renderers.AuditJSONRenderer().render(data) == JSONRenderer().render(data)


@pytest.mark.usefixtures("variety")
def test_api_bytes_are_drfs_rendering_of_the_same_data(auditor: User) -> None:
    api = APIClient()
    api.force_authenticate(auditor)

    response = api.get(PREDICTIONS)

    assert response["Content-Type"] == "application/json"
    assert response.content == JSONRenderer().render(response.data)
    assert b"\\u2028" in response.content


def test_project_renderers_are_kept(auditor: User, settings: Any) -> None:
    settings.REST_FRAMEWORK = {
        "DEFAULT_RENDERER_CLASSES": [
            "rest_framework.renderers.JSONRenderer",
            "rest_framework.renderers.BrowsableAPIRenderer",
        ]
    }
    record()
    api = APIClient()
    api.force_authenticate(auditor)

    browsable = api.get(PREDICTIONS, HTTP_ACCEPT="text/html")

    assert browsable.status_code == 200
    assert browsable["Content-Type"].startswith("text/html")


# ----------------------------------------------------------------------------- filters


def test_filterset_is_built_only_when_a_filter_is_named(
    auditor: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(prediction_id="a", model_name="fraud")
    record(prediction_id="b", model_name="churn")
    built: list[Any] = []
    original = filters.PredictionEventFilterSet.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(kwargs.get("data"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(filters.PredictionEventFilterSet, "__init__", counting_init)
    api = APIClient()
    api.force_authenticate(auditor)

    unfiltered = api.get(PREDICTIONS, {"page_size": "5", "format": "json"}).json()["results"]
    assert built == []
    assert {row["prediction_id"] for row in unfiltered} == {"a", "b"}

    empty = api.get(PREDICTIONS, {"model_name": ""}).json()["results"]
    churn = api.get(PREDICTIONS, {"model_name": "churn"}).json()["results"]
    assert len(built) == 2
    assert {row["prediction_id"] for row in empty} == {"a", "b"}
    assert [row["prediction_id"] for row in churn] == ["b"]


def test_filter_names_cover_every_filter_and_multi_part_widgets_opt_out() -> None:
    import django_filters  # type: ignore[import-untyped]

    assert filters.names_no_filter(filters.PredictionEventFilterSet, {"page_size": "1"})
    for name in filters.PredictionEventFilterSet.base_filters:
        assert not filters.names_no_filter(filters.PredictionEventFilterSet, {name: ""})

    class WithRange(django_filters.FilterSet):  # type: ignore[misc]
        confidence = django_filters.RangeFilter()

        class Meta:
            model = PredictionEvent
            fields: list[str] = []

    # RangeFilter reads confidence_min / confidence_max: never skipped.
    assert not filters.names_no_filter(WithRange, {"page_size": "1"})


def test_filterset_form_class_is_built_once() -> None:
    first = filters.PredictionEventFilterSet(data={"status": "bogus"}).form
    second = filters.PredictionEventFilterSet(data={"status": "success"}).form

    assert type(first) is type(second)
    assert not first.is_valid()
    assert second.is_valid()
    assert first.fields["status"] is not second.fields["status"]


# ----------------------------------------------------------------------------- detail


class RefuseFailedPredictions(BasePermission):
    """An object-level rule: failed predictions are not shown."""

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        assert isinstance(obj, PredictionEvent)
        return bool(obj.status != "failed")


def test_detail_takes_two_data_queries(auditor: User) -> None:
    event = record()
    attach_explanation(event, "shap", {"x": 1})
    attach_explanation(event, "shap", {"x": 2})
    decisions.review(event, "override", final_outcome="manual")
    decisions.outcome(event, "repaid")
    api = APIClient()
    api.force_authenticate(auditor)

    with CaptureQueriesContext(connection) as captured:
        body = api.get(detail(event.pk)).json()

    sql = [q["sql"] for q in captured.captured_queries]
    # The prediction (model and actor joined), then everything that hangs off it in one query.
    [_prediction] = [q for q in sql if 'FROM "ml_audit_predictionevent"' in q]
    [related] = [q for q in sql if 'FROM "ml_audit_explanation"' in q]
    for table in ("ml_audit_review", "ml_audit_outcome", "ml_audit_reasoncodes"):
        assert table in related
        assert not any(table in q for q in sql if q is not related)
    assert body["explanation_revisions"] == 2
    assert body["explanation"]["payload"] == {"x": 2}
    assert (body["effective_outcome"], body["outcome"]["value"]) == ("manual", "repaid")


def test_object_permissions_still_see_the_model_instance(settings: Any, auditor: User) -> None:
    settings.ML_AUDIT = {
        "API_PERMISSION_CLASSES": [
            "ml_audit.api.permissions.CanViewPredictions",
            RefuseFailedPredictions,
        ]
    }
    shown = record(prediction_id="ok")
    hidden = record(prediction_id="failed", status="failed")
    api = APIClient()
    api.force_authenticate(auditor)

    assert api.get(detail(shown.pk)).json()["prediction_id"] == "ok"
    assert api.get(detail(hidden.pk)).status_code == 403


def test_checks_objects() -> None:
    assert not permissions.checks_objects([permissions.CanViewPredictions()])
    assert permissions.checks_objects([RefuseFailedPredictions()])
    composed = (permissions.CanViewPredictions & permissions.CanViewPredictions)()
    assert permissions.checks_objects([composed])


# ----------------------------------------------------------------------------- page numbers


def _page_mode(settings: Any) -> APIClient:
    settings.ML_AUDIT = {"API_PAGINATION": "page"}
    api = APIClient()
    api.force_authenticate(make_user("pager", "view_predictionevent"))
    return api


def _walk(api: APIClient, params: dict[str, Any]) -> tuple[list[str], list[int]]:
    seen: list[str] = []
    counts: list[int] = []
    response = api.get(PREDICTIONS, params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        counts.append(body["count"])
        seen.extend(row["prediction_id"] for row in body["results"])
        if not body["next"]:
            return seen, counts
        response = api.get(body["next"])


def test_small_or_filtered_lists_are_counted_exactly(settings: Any) -> None:
    api = _page_mode(settings)
    for n in range(7):
        record(prediction_id=f"p{n}", timestamp=T0 + dt.timedelta(seconds=n))

    seen, counts = _walk(api, {"page_size": 3})
    filtered, filtered_counts = _walk(api, {"page_size": 3, "min_confidence": "0.1"})

    assert seen == [f"p{n}" for n in reversed(range(7))]
    assert counts == [7, 7, 7]
    assert filtered == seen
    assert filtered_counts == [7, 7, 7]
    assert api.get(PREDICTIONS, {"page_size": 3, "page": 4}).status_code == 404
    last = api.get(PREDICTIONS, {"page_size": "3", "page": "last"}).json()
    assert [row["prediction_id"] for row in last["results"]] == ["p0"]


@pytest.mark.postgres
def test_large_unfiltered_table_is_counted_by_estimate(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = _page_mode(settings)
    for n in range(12):
        record(prediction_id=f"p{n:02d}", timestamp=T0 + dt.timedelta(seconds=n))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ml_audit_predictionevent")
    record(prediction_id="after-analyze", timestamp=T0 - dt.timedelta(days=1))
    monkeypatch.setattr(pagination.EstimatedCountPaginator, "estimate_threshold", 10)
    queryset = PredictionEvent.objects.order_by("-timestamp", "-id")
    paginator = pagination.EstimatedCountPaginator(queryset, 5)

    with CaptureQueriesContext(connection) as captured:
        estimate = paginator.count
    assert paginator.exact is False
    [count_sql] = [q["sql"] for q in captured.captured_queries]
    assert "reltuples" in count_sql

    seen, counts = _walk(api, {"page_size": 5})
    # Every row once, the last page found by reading one row more, not from the count.
    assert seen == [f"p{n:02d}" for n in reversed(range(12))] + ["after-analyze"]
    assert counts == [estimate] * 3
    assert api.get(PREDICTIONS, {"page_size": 5, "page": 4}).status_code == 404
    for malformed in ("0", "-1", "1.5", "x"):
        assert api.get(PREDICTIONS, {"page_size": "5", "page": malformed}).status_code == 400
    # Past any page: never an OFFSET SQL cannot take.
    assert api.get(PREDICTIONS, {"page_size": "5", "page": str(10**20)}).status_code == 404
    last = api.get(PREDICTIONS, {"page_size": "5", "page": "last"}).json()
    assert (last["count"], last["next"]) == (13, None)
    assert [row["prediction_id"] for row in last["results"]] == ["p01", "p00", "after-analyze"]

    # Below the threshold, or filtered: exact.
    monkeypatch.setattr(pagination.EstimatedCountPaginator, "estimate_threshold", 10**9)
    exact = pagination.EstimatedCountPaginator(queryset, 5)
    assert (exact.count, exact.exact) == (13, True)
    filtered = pagination.EstimatedCountPaginator(queryset.filter(status="success"), 5)
    monkeypatch.setattr(pagination.EstimatedCountPaginator, "estimate_threshold", 10)
    assert (filtered.count, filtered.exact) == (13, True)


@pytest.mark.postgres
def test_estimate_query_does_not_count_past_the_threshold() -> None:
    for n in range(3):
        record(prediction_id=f"p{n}")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ml_audit_predictionevent")
        sql = paginators._ESTIMATE_OR_COUNT_SQL.format(table='"ml_audit_predictionevent"')
        params = ['"ml_audit_predictionevent"']
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql, [3, *params])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(sql, [3, *params])
        at_threshold = cursor.fetchone()
        cursor.execute(sql, [4, *params])
        below_threshold = cursor.fetchone()

    aggregate = next(line for line in plan.splitlines() if "Aggregate" in line)
    assert "never executed" in aggregate, plan
    assert at_threshold == (3, None)
    assert below_threshold == (3, 3)


def test_other_databases_count_exactly(settings: Any) -> None:
    if is_postgres():
        pytest.skip("the estimate is PostgreSQL's")
    for n in range(3):
        record(prediction_id=f"p{n}")
    paginator = pagination.EstimatedCountPaginator(PredictionEvent.objects.all(), 2)

    assert (paginator.count, paginator.exact) == (3, True)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1.5, "b": [true, null, "\\u00e9"]}',
        '{"a": 1, "a": 2}',
        "123456789012345678901234567890",
        '{"big": [18446744073709551616, -9223372036854775809, 9223372036854775807]}',
        '{"x": NaN, "y": -Infinity}',
        '"plain"',
        "null",
        "not json",
        None,
    ],
)
def test_json_columns_decode_as_djangos_json_field_does(text: str | None) -> None:
    field = PredictionEvent._meta.get_field("features")

    expected = field.from_db_value(text, None, connection)  # type: ignore[arg-type]

    assert repr(rows._decode(text)) == repr(expected)
