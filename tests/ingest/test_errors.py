"""The ingest endpoint's refusals: status codes, Retry-After, and nothing stored."""

from __future__ import annotations

import gzip
import io
import json
import os
import tracemalloc
import zlib
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError, ProgrammingError
from django.test import Client

from ml_audit.ingest import auth, views
from ml_audit.ingest.auth import issue, revoke
from ml_audit.models import IngestCredential, PredictionEvent
from tests.ingest.otlp import (
    JSON,
    PROTOBUF,
    URL,
    export_response,
    json_body,
    post,
    protobuf_body,
    raw_prediction,
    sdk_spans,
    status_message,
)

pytestmark = pytest.mark.django_db


def _body() -> bytes:
    return protobuf_body(sdk_spans([("ml_audit.prediction fraud", raw_prediction("p-1"))]))


# ----------------------------------------------------------------------------- 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer mla_not-a-token-of-ours"},
        {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
        {"HTTP_X_ML_AUDIT_TOKEN": "wrong"},
    ],
)
def test_without_a_valid_token_nothing_is_read_or_stored(
    client: Client, token: str, headers: dict[str, Any]
) -> None:
    with mock.patch("ml_audit.ingest.views.parse") as parse:
        response = post(client, _body(), token=None, **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "token" in status_message(response).message
    parse.assert_not_called()
    assert not PredictionEvent.objects.exists()


def test_the_token_header_is_accepted_too(client: Client, token: str) -> None:
    response = post(client, _body(), token=None, HTTP_X_ML_AUDIT_TOKEN=token)
    assert export_response(response).partial_success.rejected_spans == 0
    assert PredictionEvent.objects.count() == 1


def test_a_revoked_token_is_refused(client: Client, db: None) -> None:
    credential, token = issue("svc", ["acme"])
    assert revoke(credential)
    assert not revoke(credential)  # already revoked

    assert post(client, _body(), token=token).status_code == 401
    assert not PredictionEvent.objects.exists()


def test_only_the_hash_of_a_token_is_stored(db: None) -> None:
    credential, token = issue("svc", ["acme"])
    row = IngestCredential.objects.get(pk=credential.pk)
    stored = json.dumps(
        [str(getattr(row, field.attname)) for field in IngestCredential._meta.concrete_fields]
    )
    assert token not in stored
    assert row.token_hash == auth.hash_token(token)
    assert token.startswith(row.token_prefix)


# ----------------------------------------------------------------------------- 405, 411, 415


def test_only_post(client: Client, token: str) -> None:
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 405
    assert response["Allow"] == "POST"


@pytest.mark.parametrize(
    ("content_type", "extra"),
    [
        ("text/plain", {}),
        ("application/protobuf-ish", {}),
        (PROTOBUF, {"HTTP_CONTENT_ENCODING": "deflate"}),
        (PROTOBUF, {"HTTP_CONTENT_ENCODING": "br"}),
    ],
)
def test_other_media_types_and_encodings_are_415(
    client: Client, token: str, content_type: str, extra: dict[str, Any]
) -> None:
    response = post(client, _body(), token=token, content_type=content_type, **extra)
    assert response.status_code == 415
    assert not PredictionEvent.objects.exists()


def test_content_type_parameters_are_allowed(client: Client, token: str) -> None:
    spans = sdk_spans([("ml_audit.prediction fraud", raw_prediction("p-utf8"))])
    response = post(client, json_body(spans), token=token, content_type=f"{JSON}; charset=utf-8")
    assert response["Content-Type"] == JSON
    assert not export_response(response).HasField("partial_success")


def _chunked(client: Client, body: bytes, token: str, *, terminated: bool) -> Any:
    """A POST without Content-Length, as a chunked request reaches Django: through a server
    that decodes the chunks and ends the stream (``wsgi.input_terminated``) or not."""
    environ: dict[str, Any] = {
        "CONTENT_TYPE": PROTOBUF,
        "HTTP_CONTENT_ENCODING": "gzip",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.input": io.BytesIO(gzip.compress(body)),
    }
    if terminated:
        environ["wsgi.input_terminated"] = True
    return client.generic("POST", URL, b"", **environ)


def test_a_chunked_body_is_read_where_the_server_ends_the_stream(
    client: Client, token: str
) -> None:
    response = _chunked(client, _body(), token, terminated=True)
    assert export_response(response).partial_success.rejected_spans == 0
    assert PredictionEvent.objects.filter(prediction_id="p-1").exists()


def test_a_chunked_body_a_server_cannot_read_is_411(client: Client, token: str) -> None:
    response = _chunked(client, _body(), token, terminated=False)
    assert response.status_code == 411
    assert "Content-Length" in status_message(response).message
    assert not PredictionEvent.objects.exists()


def test_a_chunked_body_over_the_limit_is_413(client: Client, token: str, settings: Any) -> None:
    settings.ML_AUDIT = {"INGEST_MAX_BODY_BYTES": 1024}
    noise = protobuf_body(
        sdk_spans([("GET /", {"blob": os.urandom(2048).hex()})])  # does not compress
    )
    response = _chunked(client, noise, token, terminated=True)
    assert response.status_code == 413


# ----------------------------------------------------------------------------- 400


@pytest.mark.parametrize(
    ("body", "content_type", "gzipped", "encoding", "expected"),
    [
        (b"\xff\xff\xff\xff", PROTOBUF, False, "", "not an OTLP ExportTraceServiceRequest"),
        (b"{not json", JSON, False, "", "not JSON"),
        (b"[1, 2]", JSON, False, "", "must be an object"),
        (b'{"resourceSpans": 3}', JSON, False, "", "not an OTLP ExportTraceServiceRequest"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "name": "x"}]}]}]}',
            JSON,
            False,
            "",
            "traceId 'zz' is not hex",
        ),
        (b"[" * 100_000 + b"]" * 100_000, JSON, False, "", "JSON"),
        (b"not gzip at all", PROTOBUF, False, "gzip", "not valid gzip"),
        (gzip.compress(b"x" * 1000)[:-12], PROTOBUF, False, "gzip", "truncated"),
    ],
)
def test_undecodable_bodies_are_400(
    client: Client,
    token: str,
    body: bytes,
    content_type: str,
    gzipped: bool,
    encoding: str,
    expected: str,
) -> None:
    extra = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    response = post(client, body, token=token, content_type=content_type, gzipped=gzipped, **extra)
    assert response.status_code == 400
    assert response["Content-Type"] == content_type
    assert expected in status_message(response).message


# ----------------------------------------------------------------------------- 413


def test_a_body_over_the_limit_is_413_before_it_is_read(
    client: Client, token: str, settings: Any
) -> None:
    settings.ML_AUDIT = {"INGEST_MAX_BODY_BYTES": 4096}
    body = protobuf_body(
        sdk_spans([("ml_audit.prediction fraud", raw_prediction(f"p-{i}")) for i in range(20)])
    )
    assert len(body) > 4096

    with mock.patch("django.core.handlers.wsgi.WSGIRequest.read") as read:
        response = post(client, body, token=token)

    assert response.status_code == 413
    assert "4096" in status_message(response).message
    read.assert_not_called()
    assert not PredictionEvent.objects.exists()


def _gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes, gzipped, built a MiB at a time (the test never holds them)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1024 * 1024)
    parts = [packer.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, packer.flush()])


def test_a_gzip_bomb_is_413_without_inflating_it(client: Client, token: str, settings: Any) -> None:
    settings.ML_AUDIT = {"INGEST_MAX_BODY_BYTES": 1024 * 1024}
    bomb = _gzip_bomb(512 * 1024 * 1024)  # 512 MiB once inflated
    assert len(bomb) < 1024 * 1024

    tracemalloc.start()
    try:
        response = post(client, bomb, token=token, HTTP_CONTENT_ENCODING="gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 413
    assert "once decompressed" in status_message(response).message
    # The body, and at most the limit of inflated bytes (a few copies), never the 512 MiB.
    assert peak < 16 * 1024 * 1024


def test_the_limit_applies_to_the_decompressed_size(
    client: Client, token: str, settings: Any
) -> None:
    settings.ML_AUDIT = {"INGEST_MAX_BODY_BYTES": 8192}
    body = protobuf_body(
        sdk_spans([("ml_audit.prediction fraud", raw_prediction(f"p-{i}")) for i in range(20)])
    )
    assert len(gzip.compress(body)) <= 8192 < len(body)

    response = post(client, body, token=token, gzipped=True)

    assert response.status_code == 413
    assert not PredictionEvent.objects.exists()


# ----------------------------------------------------------------------------- 429, 503


def test_over_the_concurrency_bound_is_429_with_retry_after(
    client: Client, token: str, settings: Any
) -> None:
    settings.ML_AUDIT = {"INGEST_MAX_CONCURRENCY": 2, "INGEST_RETRY_AFTER_SECONDS": 7}
    # Two requests being handled:
    assert views.GATE.enter(2)
    assert views.GATE.enter(2)
    try:
        response = post(client, _body(), token=token)
    finally:
        views.GATE.leave()
        views.GATE.leave()

    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert status_message(response).code == 8
    assert not PredictionEvent.objects.exists()
    # Once a slot is free the same request goes through.
    assert post(client, _body(), token=token).status_code == 200
    assert views.GATE.inside == 0


def test_a_database_outage_while_writing_is_503_with_retry_after(
    client: Client, token: str, settings: Any
) -> None:
    settings.ML_AUDIT = {"INGEST_RETRY_AFTER_SECONDS": 3}
    outage = OperationalError("connection refused")
    with mock.patch("ml_audit.store.write_many", side_effect=outage):
        response = post(client, _body(), token=token)

    assert response.status_code == 503
    assert response["Retry-After"] == "3"
    assert status_message(response).code == 14
    assert not PredictionEvent.objects.exists()
    assert views.GATE.inside == 0
    # The sender's retry, once the database is back, stores it.
    assert export_response(post(client, _body(), token=token)).partial_success.rejected_spans == 0
    assert PredictionEvent.objects.count() == 1


def test_a_database_outage_while_authenticating_is_503(
    client: Client, token: str, settings: Any
) -> None:
    with mock.patch.object(
        IngestCredential.objects, "using", side_effect=OperationalError("server closed")
    ):
        response = post(client, _body(), token=token)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"


def test_a_record_the_database_refuses_is_rejected_alone(client: Client, token: str) -> None:
    """A database error that is not the connection's refuses records, not the request."""
    from ml_audit import store

    real = store.write_many

    def refuse_p_bad(records: Any, **kwargs: Any) -> Any:
        if any(r.prediction_id == "p-bad" for r in records):
            raise ProgrammingError("value refused")
        return real(records, **kwargs)

    spans = sdk_spans(
        [
            ("ml_audit.prediction fraud", raw_prediction("p-bad")),
            ("ml_audit.prediction fraud", raw_prediction("p-good")),
        ]
    )
    with mock.patch("ml_audit.store.write_many", side_effect=refuse_p_bad):
        answer = export_response(post(client, protobuf_body(spans), token=token))

    assert answer.partial_success.rejected_spans == 1
    assert "'p-bad': the database refused it" in answer.partial_success.error_message
    assert list(PredictionEvent.objects.values_list("prediction_id", flat=True)) == ["p-good"]
