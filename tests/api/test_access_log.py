"""The access log of the REST API: every request is recorded, append-only."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from ml_audit import store
from ml_audit.checks import check_settings
from ml_audit.conf import audit_settings
from ml_audit.exceptions import AppendOnlyError, ConfigurationError
from ml_audit.models import AccessLog
from ml_audit.services import ActorPayload

from ..conftest import is_postgres
from .test_api import MODELS, PREDICTIONS, T0, TRACE, detail, make_user, record, trace_detail

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader() -> User:
    return make_user("reader", "view_predictionevent")


@pytest.fixture
def client(reader: User) -> APIClient:
    api = APIClient()
    api.force_authenticate(reader)
    return api


def only_log() -> AccessLog:
    [row] = AccessLog.objects.all()
    return row


def test_list_request_logs_user_endpoint_query_ids_and_count(
    client: APIClient, reader: User
) -> None:
    older = record(prediction_id="older", timestamp=T0)
    newer = record(prediction_id="newer", timestamp=T0 + dt.timedelta(seconds=1))
    record(prediction_id="other-model", model_name="churn")
    before = timezone.now()

    response = client.get(PREDICTIONS, {"model_name": "fraud", "page_size": "10"})

    assert response.status_code == 200
    row = only_log()
    assert row.user_id == str(reader.pk)
    assert row.username == "reader"
    assert row.endpoint == "predictions-list"
    assert row.method == "GET"
    assert row.path == PREDICTIONS
    assert row.query == {"model_name": ["fraud"], "page_size": ["10"]}
    assert row.status_code == 200
    assert row.returned_ids == [str(newer.pk), str(older.pk)]
    assert row.result_count == 2
    assert row.client_ip == "127.0.0.1"
    assert row.tenant_scope is None
    assert before <= row.accessed_at <= timezone.now()


def test_repeated_query_parameters_keep_every_value(client: APIClient) -> None:
    record()

    client.get(f"{PREDICTIONS}?status=success&status=failed&page_size=5")

    assert only_log().query == {"status": ["success", "failed"], "page_size": ["5"]}


def test_detail_and_trace_log_their_ids(client: APIClient) -> None:
    second = record(prediction_id="second", trace_id=TRACE, timestamp=T0 + dt.timedelta(1))
    first = record(prediction_id="first", trace_id=TRACE)

    assert client.get(detail(second.pk)).status_code == 200
    assert client.get(trace_detail(TRACE)).status_code == 200

    trace_row, detail_row = AccessLog.objects.all()
    assert detail_row.endpoint == "predictions-detail"
    assert detail_row.returned_ids == [str(second.pk)]
    assert detail_row.result_count == 1
    assert trace_row.endpoint == "traces-detail"
    assert trace_row.path == trace_detail(TRACE)
    assert trace_row.returned_ids == [str(first.pk), str(second.pk)]
    assert trace_row.result_count == 2


def test_models_endpoint_logs_a_count_but_no_prediction_ids(client: APIClient) -> None:
    record(model_name="fraud")
    record(model_name="churn", prediction_id="c")

    assert client.get(MODELS).status_code == 200

    row = only_log()
    assert row.endpoint == "models-list"
    assert row.returned_ids == []
    assert row.result_count == 2


def test_bad_filter_400_is_logged_without_ids(client: APIClient) -> None:
    record()

    response = client.get(PREDICTIONS, {"min_confidence": "abc", "model_name": "a\x00b"})

    assert response.status_code == 400
    row = only_log()
    assert row.status_code == 400
    assert row.returned_ids == []
    assert row.result_count == 0
    # NUL cannot be stored in PostgreSQL text or JSON; it is replaced, not dropped silently.
    assert row.query == {"min_confidence": ["abc"], "model_name": ["a\ufffdb"]}


def test_not_found_is_logged_without_ids(client: APIClient) -> None:
    assert client.get(detail(uuid.uuid4())).status_code == 404

    row = only_log()
    assert (row.endpoint, row.status_code, row.returned_ids) == ("predictions-detail", 404, [])


def test_refused_requests_are_logged(reader: User) -> None:
    event = record()
    anonymous = APIClient().get(detail(event.pk))
    api = APIClient()
    api.force_authenticate(make_user("nobody", "view_modelversion"))
    forbidden = api.get(PREDICTIONS)

    assert anonymous.status_code in (401, 403)
    assert forbidden.status_code == 403
    denied_user, denied_anonymous = AccessLog.objects.all()
    assert denied_anonymous.user_id == ""
    assert denied_anonymous.username == ""
    assert denied_anonymous.endpoint == "predictions-detail"
    assert denied_anonymous.status_code == anonymous.status_code
    assert denied_anonymous.returned_ids == []
    assert denied_user.username == "nobody"
    assert denied_user.status_code == 403
    assert denied_user.returned_ids == []
    assert denied_user.tenant_scope is None


def test_write_attempts_are_logged(client: APIClient, reader: User) -> None:
    assert client.post(PREDICTIONS, {}).status_code == 405

    row = only_log()
    assert (row.method, row.status_code, row.username) == ("POST", 405, "reader")
    assert row.returned_ids == []


def test_access_log_can_be_switched_off(client: APIClient, settings: Any) -> None:
    settings.ML_AUDIT = {"API_ACCESS_LOG": False}
    event = record(trace_id=TRACE)

    assert client.get(PREDICTIONS).status_code == 200
    assert client.get(detail(event.pk)).status_code == 200
    assert client.get(trace_detail(TRACE)).status_code == 200
    assert client.get(MODELS).status_code == 200
    assert APIClient().get(PREDICTIONS).status_code in (401, 403)

    assert not AccessLog.objects.exists()


def test_access_log_setting_is_validated(settings: Any) -> None:
    settings.ML_AUDIT = {"API_ACCESS_LOG": "yes"}

    assert [m.id for m in check_settings()] == ["ml_audit.E001"]
    with pytest.raises(ConfigurationError, match="API_ACCESS_LOG"):
        audit_settings.API_ACCESS_LOG  # noqa: B018 - the read validates

    settings.ML_AUDIT = {}
    assert audit_settings.API_ACCESS_LOG is True


def test_tenant_scope_is_recorded(settings: Any, reader: User) -> None:
    settings.ML_AUDIT = {"API_TENANT_RESOLVER": lambda request: ["globex", "acme"]}
    mine = record()
    record(prediction_id="theirs", actor=ActorPayload("user", "9", tenant_id="initech"))
    api = APIClient()
    api.force_authenticate(reader)

    assert api.get(PREDICTIONS).status_code == 200

    row = only_log()
    assert row.tenant_scope == ["acme", "globex"]
    assert row.returned_ids == [str(mine.pk)]


def test_data_is_not_returned_when_the_access_cannot_be_logged(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    record()

    def broken_save(self: AccessLog, *args: Any, **kwargs: Any) -> None:
        raise DatabaseError("audit database is down")

    monkeypatch.setattr(AccessLog, "save", broken_save)

    with pytest.raises(DatabaseError, match="audit database is down"):
        client.get(PREDICTIONS)


@pytest.mark.django_db(databases=["default", "audit"])
def test_access_log_is_written_to_the_audit_alias(client: APIClient, settings: Any) -> None:
    settings.ML_AUDIT = {"DATABASE_ALIAS": "audit"}
    record()

    assert client.get(PREDICTIONS).status_code == 200

    assert AccessLog.objects.using("audit").count() == 1
    assert not AccessLog.objects.using("default").exists()


# ----------------------------------------------------------------------------- append-only


@pytest.fixture
def logged(client: APIClient) -> AccessLog:
    record()
    assert client.get(PREDICTIONS).status_code == 200
    return only_log()


def test_orm_refuses_to_change_or_delete_the_log(logged: AccessLog) -> None:
    logged.status_code = 500
    with pytest.raises(AppendOnlyError, match="append-only"):
        logged.save()
    with pytest.raises(AppendOnlyError):
        logged.delete()
    with pytest.raises(AppendOnlyError):
        AccessLog.objects.update(status_code=500)
    with pytest.raises(AppendOnlyError):
        AccessLog.objects.all().delete()
    assert AccessLog.objects.get().status_code == 200


@pytest.mark.parametrize(
    "statement",
    ["UPDATE ml_audit_accesslog SET username = 'forged'", "DELETE FROM ml_audit_accesslog"],
)
def test_database_rejects_raw_update_and_delete(logged: AccessLog, statement: str) -> None:
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ml_audit_accesslog WHERE username = 'forged'")
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT count(*) FROM ml_audit_accesslog")
        assert cursor.fetchone() == (1,)


@pytest.mark.postgres
def test_postgres_rejects_truncate(logged: AccessLog) -> None:
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE ml_audit_accesslog")
    assert AccessLog.objects.count() == 1


def test_purge_hatch_allows_delete_only(logged: AccessLog) -> None:
    with transaction.atomic(), store.allow_purge():
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("UPDATE ml_audit_accesslog SET username = 'x'")
        AccessLog.objects.filter(pk=logged.pk).delete()
    assert not AccessLog.objects.exists()
    if is_postgres():
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ml_audit_purge_permit")
        assert cursor.fetchone() == (0,)
