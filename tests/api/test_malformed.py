"""Nothing crashes: malformed cursors and pages are 400s, server errors are JSON and logged.

The fuzz tests send crafted ``cursor`` and ``page`` values to every endpoint in both pagination
modes and accept only a 400 naming the parameter, or a valid 200 or 404 (JSON either way), each
access-logged. They run on SQLite and on PostgreSQL, where a value SQL cannot compare (NUL, a
timestamp out of range, text for a timestamp or UUID column) fails inside the query.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import quote, quote_from_bytes

import pytest
from django.contrib.auth.models import User
from django.db import connection
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from ml_audit.api import pagination, rows
from ml_audit.api.views import SERVER_ERROR_DETAIL
from ml_audit.models import AccessLog, ModelVersion, PredictionEvent
from ml_audit.services import ActorPayload

from .test_api import MODELS, PREDICTIONS, T0, TRACE, detail, make_user, record, trace_detail

pytestmark = pytest.mark.django_db

ROOT = "/api/ml-audit/"
MODES = ("cursor", "page")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@pytest.fixture
def reader() -> User:
    return make_user("reader", "view_predictionevent")


@pytest.fixture
def api(reader: User) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(reader)
    return client


@pytest.fixture
def data() -> dict[str, str]:
    """A few predictions over two models and tenants; the URLs of every endpoint."""
    first = record(prediction_id="p1", trace_id=TRACE)
    record(prediction_id="p2", model_name="churn", timestamp=T0 + dt.timedelta(seconds=1))
    record(
        prediction_id="p3",
        timestamp=T0 - dt.timedelta(days=1),
        actor=ActorPayload("service", "batch", tenant_id="globex"),
    )
    model = ModelVersion.objects.order_by("model_name").first()
    assert model is not None
    return {
        "root": ROOT,
        "predictions": PREDICTIONS,
        "prediction": detail(first.pk),
        "models": MODELS,
        "model": f"{MODELS}{model.pk}/",
        "trace": trace_detail(TRACE),
    }


def get(api: APIClient, url: str, name: str, raw: str | bytes) -> Any:
    """GET ``url`` with the query parameter ``name`` set to ``raw`` (bytes are sent as they
    are, percent-escaped: invalid UTF-8 included)."""
    value = quote_from_bytes(raw, safe="") if isinstance(raw, bytes) else quote(raw, safe="")
    return api.get(f"{url}?{name}={value}")


def assert_handled(response: Any, name: str) -> None:
    """A 400 naming ``name``, or a valid 200 or 404; JSON either way; never a 500."""
    assert response.status_code in (200, 400, 404), (response.status_code, response.content)
    assert response["Content-Type"] == "application/json", response.content
    body = response.json()
    if response.status_code == 400:
        assert name in body, body
        assert all(isinstance(message, str) for message in body[name])
    elif response.status_code == 404:
        assert isinstance(body["detail"], str)
    elif isinstance(body, dict) and "results" in body:
        assert isinstance(body["results"], list)


# ----------------------------------------------------------------------------- crafted cursors

#: Cursors the issue names (and their neighbours), with the status each gets on the list.
CRAFTED: list[tuple[str, str, str | bytes, int]] = [
    ("predictions", "cursor", "cD1mb28=", 400),  # base64 of "p=foo" on a timestamp ordering
    ("models", "cursor", b64(b"p=a\x00b"), 400),  # NUL: PostgreSQL text cannot hold it
    ("models", "cursor", b64(b"p=a%00b"), 400),  # the same NUL, percent-escaped
    ("predictions", "cursor", b64(b"p=a\x00b"), 400),
    ("predictions", "cursor", b64(b"p=99999-01-01"), 400),  # beyond the datetime range
    ("predictions", "cursor", b64(b"p=9999-12-31T23:00:00-05:00"), 400),  # no UTC value
    ("predictions", "cursor", b64(b"p=0001-01-01T00:00:00%2B05:00"), 400),
    ("predictions", "cursor", b64(b"p=2026-02-30"), 400),
    ("predictions", "cursor", b64(b"p="), 400),
    ("predictions", "cursor", b64("p=\udcff".encode("utf-8", "surrogatepass")), 400),
    ("predictions", "cursor", b64(b"p=%ED%A0%80"), 400),  # a surrogate, percent-escaped
    ("predictions", "cursor", b64(b"p=%FF"), 400),  # not UTF-8
    ("predictions", "cursor", b64(b"p=\xff"), 400),  # not ASCII
    ("predictions", "cursor", b64(b"o=-5"), 400),
    ("predictions", "cursor", b64(b"o=1e3"), 400),
    ("predictions", "cursor", b64(b"o=\xd9\xa1"), 400),  # an Arabic-Indic digit
    ("predictions", "cursor", b64(b"r=2"), 400),
    ("predictions", "cursor", b64(b"r=1&r=0"), 400),  # a key twice
    ("predictions", "cursor", b64(b"x=1"), 400),  # not DRF's
    ("predictions", "cursor", b64(b"garbage"), 400),
    ("predictions", "cursor", "garbage", 400),  # not base64
    ("predictions", "cursor", "\x00", 400),
    ("predictions", "cursor", b"\xff\xfe", 400),
    ("predictions", "cursor", "é", 400),
    ("predictions", "cursor", b64(b"o=" + b"9" * 5000), 200),  # cut to DRF's offset cut-off
    ("predictions", "cursor", b64(b"p=2026-03-04"), 200),  # a date: midnight UTC
    ("predictions", "cursor", b64(b"r=1&p=2026-03-03T10:00:00%2B02:00"), 200),
    ("predictions", "cursor", "", 200),  # empty: the first page
    ("models", "cursor", b64(b"p=" + b"x" * 100_000), 200),  # huge, but text
    ("models", "cursor", b64("p=modèle".encode()), 400),  # DRF's cursors are ASCII
    ("models", "cursor", b64(("p=" + quote("modèle")).encode()), 200),  # as DRF writes it
]


@pytest.mark.parametrize(("endpoint", "name", "raw", "status"), CRAFTED)
def test_crafted_cursors(
    api: APIClient,
    data: dict[str, str],
    endpoint: str,
    name: str,
    raw: str | bytes,
    status: int,
) -> None:
    response = get(api, data[endpoint], name, raw)

    assert response.status_code == status, response.content
    assert_handled(response, name)
    if status == 400:
        assert list(response.json()) == ["cursor"]
        assert response.json()["cursor"][0].startswith("Invalid cursor: ")
    row = AccessLog.objects.get()
    assert row.status_code == status
    assert row.query["cursor"] == [
        (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw).replace(
            "\x00", "\ufffd"
        )
    ]


PAGES: list[tuple[str, int]] = [
    ("0", 400),
    ("-1", 400),
    ("1e3", 400),
    ("\x00", 400),
    ("+1", 400),
    (" 1", 400),
    ("1.0", 400),
    ("\u0661", 400),  # an Arabic-Indic 1: not ASCII digits
    ("first", 400),
    ("9999999999999999999", 404),
    ("9" * 5000, 404),
    ("2", 404),
    ("1", 200),
    ("01", 200),
    ("last", 200),
    ("", 200),
]


@pytest.mark.parametrize("endpoint", ["predictions", "models"])
@pytest.mark.parametrize(("page", "status"), PAGES)
def test_page_numbers(
    api: APIClient, data: dict[str, str], settings: Any, endpoint: str, page: str, status: int
) -> None:
    settings.ML_AUDIT = {"API_PAGINATION": "page"}

    response = get(api, data[endpoint], "page", page)

    assert response.status_code == status, response.content
    assert_handled(response, "page")
    if status == 400:
        assert list(response.json()) == ["page"]
    assert AccessLog.objects.get().status_code == status


def test_a_position_of_the_wrong_type_for_a_uuid_ordering() -> None:
    paginator = pagination.build_paginator(("-id",))
    factory = APIRequestFactory()

    def page(cursor: str) -> list[Any] | None:
        request = Request(factory.get("/", {"cursor": cursor}))
        return paginator.paginate_queryset(PredictionEvent.objects.all(), request)

    with pytest.raises(ValidationError) as refused:
        page(b64(b"p=foo"))
    assert list(refused.value.detail) == ["cursor"]
    event = record()
    assert page(b64(f"p={event.pk}".encode())) == []  # nothing older than the only row
    assert page(b64(f"p={event.pk.hex.upper()}".encode())) == []  # any UUID spelling


def test_cursors_drf_writes_are_read_back_unchanged() -> None:
    paginator = CursorPagination()
    paginator.base_url = "http://testserver/"
    timestamp = "2026-03-03 10:00:00.123456+00:00"
    for cursor in (
        Cursor(offset=0, reverse=False, position=cast(Any, timestamp)),
        Cursor(offset=7, reverse=True, position=cast(Any, timestamp)),
        Cursor(offset=3, reverse=False, position=None),
    ):
        url = paginator.encode_cursor(cursor)
        encoded = Request(APIRequestFactory().get(url)).query_params["cursor"]
        assert pagination.decode_cursor(encoded, PredictionEvent, ("-timestamp", "-id")) == cursor
    name = Cursor(offset=0, reverse=False, position=cast(Any, "a b+c&d=é"))
    encoded = Request(APIRequestFactory().get(paginator.encode_cursor(name))).query_params["cursor"]
    assert pagination.decode_cursor(encoded, ModelVersion, ("model_name",)) == name


def test_cursor_positions_are_read_in_utc() -> None:
    def position(text: str) -> Any:
        encoded = b64(f"p={quote(text)}".encode())
        return pagination.decode_cursor(encoded, PredictionEvent, ("-timestamp",)).position

    assert position("2026-03-03T12:00:00+02:00") == "2026-03-03 10:00:00+00:00"
    assert position("2026-03-03T10:00:00") == "2026-03-03 10:00:00+00:00"  # naive: UTC
    assert position("2026-03-03") == "2026-03-03 00:00:00+00:00"
    for bad in ("9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00", "10:00", "nan"):
        with pytest.raises(pagination.InvalidPosition):
            position(bad)


# ----------------------------------------------------------------------------- fuzz

ENDPOINTS = ("root", "predictions", "prediction", "models", "model", "trace")

_TEXT = st.text(max_size=24)  # NUL and other control characters included
_SURROGATES = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
_TIMESTAMPS = st.one_of(
    st.datetimes(timezones=st.sampled_from([None, dt.UTC])).map(lambda value: value.isoformat()),
    st.datetimes(
        timezones=st.sampled_from(
            [dt.timezone(dt.timedelta(hours=14)), dt.timezone(dt.timedelta(hours=-14))]
        )
    ).map(lambda value: value.isoformat()),
    st.sampled_from(
        [
            "99999-01-01",
            "0000-01-01",
            "9999-12-31T23:59:59.999999-23:59",
            "0001-01-01T00:00:00+23:59",
            "2026-13-01",
            "2026-03-03T24:00:00",
            "2026-03-03T10:00:00+99:00",
            "2026-03-03 10:00:00+00:00",
        ]
    ),
)
_VALUES = st.one_of(
    _TEXT,
    _SURROGATES,
    _TIMESTAMPS,
    st.uuids().map(str),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(["9" * 5000, "nan", "inf", "-0", "1e400", "0x10", "1_000", "", " "]),
)


def _encode_pair(key: str, value: str, escaped: bool) -> bytes:
    raw_key = key.encode("utf-8", "surrogatepass")
    raw_value = value.encode("utf-8", "surrogatepass")
    if escaped:
        return quote_from_bytes(raw_key).encode() + b"=" + quote_from_bytes(raw_value).encode()
    return raw_key + b"=" + raw_value


_PAIRS = st.lists(
    st.tuples(st.sampled_from(["o", "r", "p", "p", "x", "", "O"]) | _TEXT, _VALUES, st.booleans()),
    max_size=4,
).map(lambda pairs: b"&".join(_encode_pair(*pair) for pair in pairs))
_B64 = st.sampled_from(
    [
        lambda raw: base64.b64encode(raw).decode("ascii"),
        lambda raw: base64.urlsafe_b64encode(raw).decode("ascii"),
        lambda raw: base64.b64encode(raw).decode("ascii").rstrip("="),
    ]
)
CURSORS: st.SearchStrategy[str | bytes] = st.one_of(
    st.binary(max_size=64),  # random bytes, sent as they are
    st.binary(max_size=64).map(b64),  # base64 of random bytes
    st.tuples(_PAIRS, _B64).map(lambda pair: pair[1](pair[0])),  # base64 of key=value pairs
    _TEXT,
)
PAGE_NUMBERS: st.SearchStrategy[str | bytes] = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["0", "-1", "9999999999999999999", "1e3", "\x00", "last", "9" * 5000]),
    _TEXT,
    st.binary(max_size=16),
)

FUZZ = hypothesis_settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _fuzz(api: APIClient, data: dict[str, str], endpoint: str, name: str, raw: str | bytes) -> None:
    before = AccessLog.objects.count()
    assert_handled(get(api, data[endpoint], name, raw), name)
    assert AccessLog.objects.count() == before + 1  # every answer is access-logged


@pytest.mark.parametrize("mode", MODES)
@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), raw=CURSORS)
@example(endpoint="predictions", raw="cD1mb28=")
@example(endpoint="models", raw=b64(b"p=a\x00b"))
def test_fuzzed_cursors_are_never_a_server_error(
    api: APIClient,
    data: dict[str, str],
    settings: Any,
    mode: str,
    endpoint: str,
    raw: str | bytes,
) -> None:
    settings.ML_AUDIT = {"API_PAGINATION": mode}
    _fuzz(api, data, endpoint, "cursor", raw)


@pytest.mark.parametrize("mode", MODES)
@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), raw=PAGE_NUMBERS)
@example(endpoint="predictions", raw="1e3")
def test_fuzzed_page_numbers_are_never_a_server_error(
    api: APIClient,
    data: dict[str, str],
    settings: Any,
    mode: str,
    endpoint: str,
    raw: str | bytes,
) -> None:
    settings.ML_AUDIT = {"API_PAGINATION": mode}
    _fuzz(api, data, endpoint, "page", raw)


# ----------------------------------------------------------------------------- server errors


def _break_the_row_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(rows, "serialize_predictions", broken)


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_a_server_error_is_a_json_500_and_access_logged(
    api: APIClient,
    reader: User,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    accept: str,
) -> None:
    event = record()
    _break_the_row_builder(monkeypatch)

    with caplog.at_level(logging.ERROR, logger="django.request"):
        listing = api.get(PREDICTIONS, {"page_size": "5"}, HTTP_ACCEPT=accept)
        single = api.get(detail(event.pk), HTTP_ACCEPT=accept)

    for response in (listing, single):
        assert response.status_code == 500
        assert response["Content-Type"] == "application/json"  # the browsable API too
        assert response.json() == {"detail": SERVER_ERROR_DETAIL}
        assert b"secret internals" not in response.content
    single_row, list_row = AccessLog.objects.all()
    assert (list_row.endpoint, list_row.status_code) == ("predictions-list", 500)
    assert list_row.query == {"page_size": ["5"]}
    assert list_row.user_id == str(reader.pk)
    assert list_row.returned_ids == []
    assert list_row.result_count == 0
    assert (single_row.endpoint, single_row.status_code) == ("predictions-detail", 500)
    # Logged as Django logs its own 500s: once each, with the traceback.
    errors = [r for r in caplog.records if r.name == "django.request"]
    assert len(errors) == 2
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in errors)


def test_a_server_error_reaches_got_request_exception(
    reader: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    record()
    _break_the_row_builder(monkeypatch)
    raising = APIClient()  # re-raises what got_request_exception reported
    raising.force_authenticate(reader)

    with pytest.raises(RuntimeError, match="secret internals"):
        raising.get(PREDICTIONS)

    assert AccessLog.objects.get().status_code == 500


def test_with_debug_a_server_error_is_raised_and_still_logged(
    api: APIClient, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DEBUG = True
    record()
    _break_the_row_builder(monkeypatch)

    response = api.get(PREDICTIONS)

    assert response.status_code == 500
    assert b"secret internals" in response.content  # Django's debug page
    assert AccessLog.objects.get().status_code == 500


def test_a_500_whose_row_cannot_be_written_is_still_a_json_500(
    api: APIClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    record()
    _break_the_row_builder(monkeypatch)

    def broken_save(self: AccessLog, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit database is down")

    monkeypatch.setattr(AccessLog, "save", broken_save)

    response = api.get(PREDICTIONS)

    assert response.status_code == 500
    assert response.json() == {"detail": SERVER_ERROR_DETAIL}
    assert any("access log row" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- ATOMIC_REQUESTS


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("make_request", "status"),
    [
        (lambda api: api.get(PREDICTIONS, {"min_confidence": "x"}), 400),
        (lambda api: api.get(PREDICTIONS, {"cursor": "cD1mb28="}), 400),
        (lambda api: api.get(PREDICTIONS, {"unknown": "1"}), 400),
        (lambda api: api.get(detail("0" * 32)), 404),
        (lambda api: api.get(PREDICTIONS), 200),
    ],
)
def test_refused_requests_are_logged_under_atomic_requests(
    monkeypatch: pytest.MonkeyPatch, make_request: Callable[[APIClient], Any], status: int
) -> None:
    # DRF marks the request's transaction for rollback when it refuses a request; inside one,
    # the access log's INSERT failed and every 400 became a 500.
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    record()
    api = APIClient(raise_request_exception=False)
    api.force_authenticate(make_user("reader", "view_predictionevent"))

    assert make_request(api).status_code == status

    assert AccessLog.objects.get().status_code == status
