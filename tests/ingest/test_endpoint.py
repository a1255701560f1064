"""The ingest endpoint end to end through Django's test client: spans in, rows out."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client

from ml_audit import store
from ml_audit.conf import audit_settings
from ml_audit.ingest import metrics
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.otel import conventions
from tests.factories import redacted
from tests.ingest.conftest import SERVICE
from tests.ingest.otlp import (
    JSON,
    PROTOBUF,
    RAW_CARD,
    RAW_EMAIL,
    explanation_attributes,
    export_response,
    hex_ids,
    json_body,
    post,
    protobuf_body,
    raw_prediction,
    sdk_spans,
)

pytestmark = pytest.mark.django_db


def _assert_no_raw_pii(row: PredictionEvent) -> None:
    stored = json.dumps(
        [row.features, row.output, row.metadata, row.auth_context, row.error_message]
    )
    assert RAW_EMAIL not in stored
    assert RAW_CARD not in stored
    assert RAW_CARD.replace(" ", "") not in stored


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
@pytest.mark.parametrize("gzipped", [False, True])
def test_a_prediction_span_becomes_a_redacted_row_of_the_service(
    client: Client, token: str, content_type: str, gzipped: bool
) -> None:
    spans = sdk_spans([("ml_audit.prediction fraud", raw_prediction("p-1"))])
    body = protobuf_body(spans) if content_type == PROTOBUF else json_body(spans)

    response = post(client, body, token=token, content_type=content_type, gzipped=gzipped)

    assert response["Content-Type"] == content_type
    answer = export_response(response)
    assert not answer.HasField("partial_success")
    row = PredictionEvent.objects.select_related("actor", "model").get(prediction_id="p-1")
    trace_id, span_id = hex_ids(spans[0])
    assert (row.trace_id, row.span_id, row.parent_span_id) == (trace_id, span_id, "")
    assert row.actor is not None
    assert (row.actor.actor_type, row.actor.actor_id, row.actor.tenant_id) == (
        "service",
        SERVICE,
        "acme",
    )
    assert row.tenant_id == "acme"
    assert (row.model.model_name, row.model.version) == ("fraud", "7")
    assert row.output == {"score": 0.91}
    assert row.confidence == pytest.approx(0.91)
    assert row.decision_outcome == "flagged"
    # The sender's own actor is kept as it reported it, in the request context.
    assert row.auth_context["ingest"]["service"] == SERVICE
    assert row.auth_context["ingest"]["reported_actor"] == {
        "actor_type": "user",
        "actor_id": "u-42",
    }
    # Redacted here: the sender did not redact at all.
    _assert_no_raw_pii(row)
    assert row.features["amount"] == 120.5
    assert row.features["email"] == audit_settings.redaction_policy.mask_value
    assert "features" in row.redaction["paths"]
    assert row.redaction["policy"] == audit_settings.redaction_policy.version
    # The content hash is this server's, and verifies.
    assert store.verify_event(row)
    assert metrics.stats()["stored"] == 1


def test_a_sender_that_claims_it_redacted_is_redacted_again(client: Client, token: str) -> None:
    attributes = raw_prediction(
        "p-liar", **{"ml_audit.redaction": json.dumps({"policy": "v0", "paths": {}})}
    )
    response = post(
        client, protobuf_body(sdk_spans([("ml_audit.prediction fraud", attributes)])), token=token
    )

    assert not export_response(response).HasField("partial_success")
    row = PredictionEvent.objects.get(prediction_id="p-liar")
    _assert_no_raw_pii(row)
    assert row.redaction["policy"] == audit_settings.redaction_policy.version
    assert store.verify_event(row)


def test_spans_of_an_ml_audit_sender_keep_their_redaction(client: Client, token: str) -> None:
    """A record redacted by ml_audit itself (conventions.encode) is stored as redacted there."""
    record = redacted(
        prediction_id="p-ml-audit",
        features={"age": 30, "email": RAW_EMAIL},
        actor={"actor_type": "user", "actor_id": "u-1", "tenant_id": "globex"},
    )
    attributes = conventions.encode(record, openinference=True)
    spans = sdk_spans([(conventions.prediction_span_name("scorer"), attributes)])

    response = post(client, protobuf_body(spans), token=token)

    assert not export_response(response).HasField("partial_success")
    row = PredictionEvent.objects.get(prediction_id="p-ml-audit")
    assert row.features == record.features
    assert row.redaction == record.redaction
    assert row.tenant_id == "globex"
    assert row.timestamp == record.timestamp
    assert row.pk != record.event_id  # this server's own primary key
    _assert_no_raw_pii(row)


def test_a_retried_request_is_a_success_and_stores_one_row(client: Client, token: str) -> None:
    spans = sdk_spans([("ml_audit.prediction fraud", raw_prediction(f"p-{i}")) for i in range(3)])
    body = protobuf_body(spans)

    first = export_response(post(client, body, token=token))
    again = export_response(post(client, body, token=token, gzipped=True))

    assert not first.HasField("partial_success")
    assert not again.HasField("partial_success")
    assert PredictionEvent.objects.count() == 3
    assert metrics.stats() == {"stored": 3, "duplicates": 3, "rejected": 0, "ignored": 0}


def test_a_conflicting_prediction_is_rejected_in_partial_success(
    client: Client, token: str
) -> None:
    post(
        client,
        protobuf_body(sdk_spans([("ml_audit.prediction fraud", raw_prediction("p-c"))])),
        token=token,
    )
    changed = raw_prediction("p-c", **{"ml_audit.output": json.dumps({"score": 0.1})})
    fresh = raw_prediction("p-d")
    spans = sdk_spans(
        [("ml_audit.prediction fraud", changed), ("ml_audit.prediction fraud", fresh)]
    )

    answer = export_response(post(client, protobuf_body(spans), token=token))

    assert answer.partial_success.rejected_spans == 1
    assert "'p-c'" in answer.partial_success.error_message
    assert "output" in answer.partial_success.error_message
    assert PredictionEvent.objects.get(prediction_id="p-c").output == {"score": 0.91}
    assert PredictionEvent.objects.filter(prediction_id="p-d").exists()


def test_a_tenant_the_service_may_not_write_is_rejected(client: Client, token: str) -> None:
    spans = sdk_spans(
        [
            (
                "ml_audit.prediction fraud",
                raw_prediction("p-other", **{"ml_audit.actor.tenant_id": "initech"}),
            ),
            ("ml_audit.prediction fraud", raw_prediction("p-mine")),
        ]
    )

    answer = export_response(post(client, protobuf_body(spans), token=token))

    assert answer.partial_success.rejected_spans == 1
    assert "may not write 'initech'" in answer.partial_success.error_message
    assert list(PredictionEvent.objects.values_list("prediction_id", flat=True)) == ["p-mine"]


def test_no_tenant_needs_the_credential_to_allow_it(client: Client, db: None) -> None:
    from ml_audit.ingest.auth import issue

    strict = issue("strict-svc", ["acme"])[1]
    spans = sdk_spans(
        [
            (
                "ml_audit.prediction fraud",
                raw_prediction("p-none", **{"ml_audit.actor.tenant_id": None}),
            )
        ]
    )

    answer = export_response(post(client, protobuf_body(spans), token=strict))

    assert answer.partial_success.rejected_spans == 1
    assert "may not write no tenant" in answer.partial_success.error_message
    assert not PredictionEvent.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ml_audit.model.name": None}, "ml_audit.model.name"),
        ({"ml_audit.features": "{not json"}, "ml_audit.features"),
        ({"ml_audit.features": json.dumps([1, 2])}, "features"),
        ({"ml_audit.confidence": 1.5}, "confidence"),
        ({"ml_audit.status": "maybe"}, "status"),
        ({"ml_audit.schema_version": 2}, "schema version"),
        ({"ml_audit.timestamp": "yesterday"}, "yesterday"),
        ({"client.address": "not-an-ip"}, "ip_address"),
        ({"ml_audit.actor.tenant_id": 3.5}, "tenant_id must be a string"),
    ],
)
def test_invalid_prediction_spans_are_rejected_by_name(
    client: Client, token: str, overrides: dict[str, object], expected: str
) -> None:
    spans = sdk_spans(
        [
            ("ml_audit.prediction fraud", raw_prediction("p-bad", **overrides)),
            ("ml_audit.prediction fraud", raw_prediction("p-good")),
        ]
    )

    answer = export_response(post(client, protobuf_body(spans), token=token))

    assert answer.partial_success.rejected_spans == 1
    assert expected in answer.partial_success.error_message
    assert list(PredictionEvent.objects.values_list("prediction_id", flat=True)) == ["p-good"]
    assert metrics.stats()["rejected"] == 1


def test_other_spans_are_ignored_and_counted_not_rejected(client: Client, token: str) -> None:
    spans = sdk_spans(
        [
            ("GET /score", {"http.method": "GET"}),
            ("ml_audit.prediction fraud", raw_prediction("p-1")),
            ("SELECT", {"db.system": "postgresql"}),
            ("ml_audit.predictionist", {}),  # a prefix of ours, but not our name
        ]
    )

    answer = export_response(post(client, protobuf_body(spans), token=token))

    assert answer.partial_success.rejected_spans == 0
    assert answer.partial_success.error_message.startswith("3 span(s) ignored")
    assert PredictionEvent.objects.count() == 1
    assert metrics.stats() == {"stored": 1, "duplicates": 0, "rejected": 0, "ignored": 3}


def test_an_empty_request_is_a_plain_success(client: Client, token: str) -> None:
    # The test client sends no Content-Type with an empty body: name it, as exporters do.
    answer = export_response(post(client, b"", token=token, CONTENT_TYPE=PROTOBUF))
    assert not answer.HasField("partial_success")
    json_answer = post(client, b"{}", token=token, content_type=JSON)
    assert json_answer.content == b"{}"


# ----------------------------------------------------------------------------- explanations


def test_an_explanation_in_the_same_request_is_appended_redacted(
    client: Client, token: str
) -> None:
    spans = sdk_spans(
        [
            ("ml_audit.prediction fraud", raw_prediction("p-x")),
            ("ml_audit.explanation shap", explanation_attributes("p-x")),
        ]
    )

    answer = export_response(post(client, protobuf_body(spans), token=token))

    assert not answer.HasField("partial_success")
    explanation = Explanation.objects.get(prediction__prediction_id="p-x")
    assert (explanation.method, explanation.method_version, explanation.revision) == (
        "shap",
        "0.45",
        1,
    )
    assert explanation.payload == {"amount": 0.7, "email": 0.1}  # keyed by feature names
    assert RAW_EMAIL not in explanation.summary_text
    assert explanation.summary_text.startswith("amount drove the score; contact ")
    assert store.verify_explanation(explanation)


def test_explanations_are_idempotent_and_revised(client: Client, token: str) -> None:
    post(
        client,
        protobuf_body(sdk_spans([("ml_audit.prediction fraud", raw_prediction("p-r"))])),
        token=token,
    )
    first = protobuf_body(sdk_spans([("ml_audit.explanation shap", explanation_attributes("p-r"))]))
    revised = protobuf_body(
        sdk_spans(
            [
                (
                    "ml_audit.explanation shap",
                    explanation_attributes(
                        "p-r", **{"ml_audit.explanation.payload": json.dumps({"amount": 0.9})}
                    ),
                )
            ]
        )
    )

    for body in (first, first, revised):
        assert not export_response(post(client, body, token=token)).HasField("partial_success")

    revisions = list(
        Explanation.objects.filter(prediction__prediction_id="p-r").values_list(
            "revision", "payload"
        )
    )
    assert revisions == [(1, {"amount": 0.7, "email": 0.1}), (2, {"amount": 0.9})]
    assert metrics.stats()["duplicates"] == 1


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        (explanation_attributes("p-missing"), "no such prediction is stored"),
        (
            explanation_attributes("p-e", **{"ml_audit.explanation.payload": None}),
            "ml_audit.explanation.payload",
        ),
        (explanation_attributes("p-e", **{"ml_audit.explanation.status": "done"}), "status"),
        (
            explanation_attributes("p-e", **{"ml_audit.prediction_id": None}),
            "needs ml_audit.prediction_id",
        ),
    ],
)
def test_explanations_that_cannot_be_stored_are_rejected(
    client: Client, token: str, attributes: dict[str, object], expected: str
) -> None:
    post(
        client,
        protobuf_body(sdk_spans([("ml_audit.prediction fraud", raw_prediction("p-e"))])),
        token=token,
    )

    answer = export_response(
        post(
            client,
            protobuf_body(sdk_spans([("ml_audit.explanation shap", attributes)])),
            token=token,
        )
    )

    assert answer.partial_success.rejected_spans == 1
    assert expected in answer.partial_success.error_message
    assert not Explanation.objects.exists()


def test_an_explanation_of_another_tenants_prediction_is_rejected(
    client: Client, token: str
) -> None:
    from ml_audit.ingest.auth import issue

    post(
        client,
        protobuf_body(sdk_spans([("ml_audit.prediction fraud", raw_prediction("p-acme"))])),
        token=token,
    )
    other = issue("other-svc", ["globex"])[1]

    answer = export_response(
        post(
            client,
            protobuf_body(
                sdk_spans([("ml_audit.explanation shap", explanation_attributes("p-acme"))])
            ),
            token=other,
        )
    )

    assert answer.partial_success.rejected_spans == 1
    assert "may not write the prediction's tenant" in answer.partial_success.error_message
    assert not Explanation.objects.exists()


def test_what_the_sender_reports_of_its_actor_is_redacted_too(client: Client, token: str) -> None:
    attributes = raw_prediction(
        "p-actor",
        **{
            "ml_audit.actor.id": RAW_EMAIL,
            "ml_audit.actor.auth_context": json.dumps({"password": "hunter2", "scope": "read"}),
        },
    )

    post(client, protobuf_body(sdk_spans([("ml_audit.prediction fraud", attributes)])), token=token)

    row = PredictionEvent.objects.get(prediction_id="p-actor")
    context = row.auth_context["ingest"]
    assert RAW_EMAIL not in json.dumps(context)
    assert "hunter2" not in json.dumps(context)
    assert context["reported_auth_context"]["scope"] == "read"
    assert row.redaction["paths"]["auth_context"]
    assert store.verify_event(row)


def test_with_auth_context_among_the_redacted_payloads(
    client: Client, token: str, settings: Any
) -> None:
    settings.ML_AUDIT = {"REDACT_PAYLOADS": ["features", "auth_context", "output"]}
    attributes = raw_prediction(
        "p-ctx",
        **{
            "ml_audit.actor.id": RAW_EMAIL,
            "ml_audit.output": json.dumps({"score": 0.5, "contact": RAW_EMAIL}),
        },
    )

    post(client, protobuf_body(sdk_spans([("ml_audit.prediction fraud", attributes)])), token=token)

    row = PredictionEvent.objects.get(prediction_id="p-ctx")
    assert RAW_EMAIL not in json.dumps([row.auth_context, row.output])
    assert {"auth_context", "output", "features"} <= set(row.redaction["paths"])


def test_several_gzip_members_are_one_body(client: Client, token: str) -> None:
    body = protobuf_body(sdk_spans([("ml_audit.prediction fraud", raw_prediction("p-gz"))]))
    half = len(body) // 2
    members = gzip.compress(body[:half]) + gzip.compress(body[half:])

    response = post(client, members, token=token, HTTP_CONTENT_ENCODING="gzip")

    assert not export_response(response).HasField("partial_success")
    assert PredictionEvent.objects.filter(prediction_id="p-gz").exists()


def test_the_ingest_modules_the_admin_uses_import_no_protobuf() -> None:
    code = (
        "import django, sys; django.setup(); import ml_audit.ingest.auth, ml_audit.ingest.admin; "
        "import ml_audit.management.commands.ml_audit_ingest_token; "
        "bad = [m for m in sys.modules if m.startswith(('google.protobuf', "
        "'opentelemetry.proto'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
