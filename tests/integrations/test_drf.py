"""@audited_prediction on DRF views: features, output, failures, explanations, ON_AUDIT_FAILURE."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import OperationalError
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rest_framework.test import APIClient

from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError, InvalidRecord
from ml_audit.integrations.drf import PREDICTION_ID_HEADER, AuditContext, audited_prediction
from ml_audit.models import PredictionEvent
from ml_audit.otel.setup import get_pipeline
from tests.integrations import views

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.integrations.urls")]

EMAIL = "jane.doe@example.com"


@pytest.fixture
def client(django_user_model: Any) -> APIClient:
    user = django_user_model.objects.create_user("analyst", password="x")
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def audit_settings_with(settings: Any) -> Any:
    """Set ML_AUDIT keys for one test (the audit pipeline is rebuilt per test)."""

    def apply(**values: Any) -> None:
        settings.ML_AUDIT = {**getattr(settings, "ML_AUDIT", {}), **values}

    return apply


def failing_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("ml_audit.store.write_many", down)


def post(client: APIClient, path: str, **data: Any) -> Any:
    return client.post(path, data, format="json")


# ---------------------------------------------------------------------------- the happy path


def test_a_class_view_records_validated_features_output_and_explanation(
    client: APIClient, exporter: InMemorySpanExporter
) -> None:
    response = post(client, "/score/", income=5000, email=EMAIL, mode="ok", ignored="x")
    assert response.status_code == 200
    pid = response.data["prediction_id"]
    assert response[PREDICTION_ID_HEADER] == pid
    event = PredictionEvent.objects.get(prediction_id=pid)
    # The serializer's validated data: the unknown key is gone, the email is masked.
    assert event.features == {"income": 5000, "email": "*****", "mode": "ok"}
    assert event.output == {"score": 0.9, "label": "flagged", "reason": "r9"}
    assert (event.decision_outcome, event.confidence) == ("flagged", 0.9)
    assert (event.model.model_name, event.model.version) == ("fraud", "2.0")
    assert event.actor is not None
    assert (event.actor.actor_type, event.actor.actor_id) == (
        "user",
        str(response.wsgi_request.user.pk),
    )
    assert event.status == "success"
    assert event.explanation is not None
    assert event.explanation.method == "reason_codes"
    assert event.explanation.payload == {"feature_importances": {"income": -0.7}}
    # The row shares the span's trace id, and the exported span carries no raw email.
    spans = [s for s in exporter.get_finished_spans() if s.name == "ml_audit.prediction fraud"]
    assert len(spans) == 1
    assert f"{spans[0].context.trace_id:032x}" == event.trace_id
    assert EMAIL not in json.dumps(dict(spans[0].attributes or {}))


def test_the_view_sees_the_validated_serializer_and_its_prediction(client: APIClient) -> None:
    response = post(client, "/score/", income=5000, email=EMAIL, mode="ok")
    context = views.SEEN["context"]
    assert isinstance(context, AuditContext)
    assert context.serializer is not None
    assert context.serializer.validated_data["email"] == EMAIL  # the view gets it in clear
    assert context.prediction.prediction_id == response.data["prediction_id"]


def test_invalid_input_is_a_400_and_records_nothing(
    client: APIClient, exporter: InMemorySpanExporter
) -> None:
    response = post(client, "/score/", income=-1, email="not-an-email", mode="ok")
    assert response.status_code == 400
    assert set(response.data) == {"income", "email"}
    assert PREDICTION_ID_HEADER not in response
    assert PredictionEvent.objects.count() == 0
    assert not [s for s in exporter.get_finished_spans() if s.name.startswith("ml_audit")]


def test_input_that_cannot_be_audited_is_refused_before_scoring(client: APIClient) -> None:
    views.SEEN.clear()
    response = post(client, "/score-fn/", income=1, email="a\x00b@example.com")
    assert response.status_code == 400
    (field,) = response.data
    assert field.startswith("features")
    assert "NUL" in str(response.data[field][0])
    assert "context" not in views.SEEN  # the view never ran
    assert PredictionEvent.objects.count() == 0


def test_a_function_view_returning_a_dict_and_decision_outcome_field(client: APIClient) -> None:
    response = post(client, "/score-fn/", income=200_000, email=EMAIL)
    assert response.status_code == 200
    assert response.data == {
        "score": 0.05,
        "label": "clear",
        "reason": "r0",
        "prediction_id": response[PREDICTION_ID_HEADER],
    }
    event = PredictionEvent.objects.get(prediction_id=response.data["prediction_id"])
    # decision_outcome_field wins over decision_field.
    assert event.decision_outcome == "r0"
    assert event.features == {"income": 200_000, "email": "*****"}  # request.data, redacted


def test_a_viewset_action_uses_the_serializer_of_get_serializer_class(client: APIClient) -> None:
    response = post(client, "/viewset/", income=5, email=EMAIL, mode="ok", extra="dropped")
    assert response.status_code == 200
    event = PredictionEvent.objects.get(prediction_id=response.data["prediction_id"])
    assert event.model.model_name == "fraud-viewset"
    assert event.features == {"income": 5, "email": "*****", "mode": "ok"}
    assert event.decision_outcome == "flagged"
    assert post(client, "/viewset/", income="x", email=EMAIL, mode="ok").status_code == 400


def test_a_generic_view_without_serializer_records_the_request_data(client: APIClient) -> None:
    response = post(client, "/plain/", anything=[1, 2], email=EMAIL)
    event = PredictionEvent.objects.get(prediction_id=response.data["prediction_id"])
    assert event.features == {"anything": [1, 2], "email": "*****"}


def test_a_get_view_records_the_query_parameters(client: APIClient) -> None:
    response = client.get("/score-fn/", {"income": "7", "email": EMAIL, "tag": ["a", "b"]})
    assert response.status_code == 200
    event = PredictionEvent.objects.get(prediction_id=response.data["prediction_id"])
    # A repeated parameter keeps every value.
    assert event.features == {"income": "7", "email": "*****", "tag": ["a", "b"]}


def test_a_form_post_and_a_json_array_body(client: APIClient) -> None:
    response = client.post("/plain/", {"amount": "3", "tag": ["x", "y"]})  # multipart form
    event = PredictionEvent.objects.get(prediction_id=response.data["prediction_id"])
    assert event.features == {"amount": "3", "tag": ["x", "y"]}
    response = client.post("/plain/", [1, 2, 3], format="json")
    event = PredictionEvent.objects.get(prediction_id=response.data["prediction_id"])
    assert event.features == {"data": [1, 2, 3]}


def test_features_callable_and_non_mapping_output(client: APIClient) -> None:
    response = post(client, "/score-features/retail/", income=3, email=EMAIL)
    assert response.status_code == 200
    assert response.data == [1, 2, 3]
    pid = response[PREDICTION_ID_HEADER]
    get_pipeline().processor.force_flush()  # "serve" without a builder writes in batch mode
    event = PredictionEvent.objects.get(prediction_id=pid)
    assert event.features == {"income": 3, "kind": "retail"}
    assert event.output == [1, 2, 3]
    assert event.decision_outcome == ""  # none named: stored empty


def test_an_explanation_builder_returning_none_attaches_nothing(client: APIClient) -> None:
    response = post(client, "/score/", income=500_000, email=EMAIL, mode="ok")
    event = PredictionEvent.objects.get(prediction_id=response.data["prediction_id"])
    assert event.confidence == 0.05
    assert event.explanation is None


# ---------------------------------------------------------------------------------- failures


def test_a_crash_is_recorded_as_failed_without_its_message_and_re_raised(
    client: APIClient, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(ValueError, match="model crashed"):
        post(client, "/score/", income=5, email=EMAIL, mode="crash")
    event = PredictionEvent.objects.get()
    assert event.status == "failed"
    assert event.error_type == "builtins.ValueError"
    assert event.error_message == ""  # the text quoted the input
    assert event.output is None
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "ml_audit.prediction fraud"]
    assert not span.status.is_ok
    assert EMAIL not in json.dumps([dict(e.attributes or {}) for e in span.events])


def test_an_api_exception_is_recorded_with_its_status_and_code(
    client: APIClient, settings: Any
) -> None:
    settings.REST_FRAMEWORK = {"EXCEPTION_HANDLER": "ml_audit.integrations.drf.exception_handler"}
    response = post(client, "/score/", income=5, email=EMAIL, mode="refuse")
    assert response.status_code == 422
    pid = response[PREDICTION_ID_HEADER]
    assert response.data["prediction_id"] == pid
    event = PredictionEvent.objects.get(prediction_id=pid)
    assert event.status == "failed"
    assert event.error_type == "tests.integrations.views.Refused"
    assert event.error_message == "HTTP 422; code: refused"


def test_without_the_exception_handler_an_error_response_is_drf_s_own(client: APIClient) -> None:
    response = post(client, "/score/", income=5, email=EMAIL, mode="refuse")
    assert response.status_code == 422
    assert PREDICTION_ID_HEADER not in response
    assert response.data == {"detail": "cannot score this applicant"}
    assert PredictionEvent.objects.get().status == "failed"


def test_an_error_response_returned_by_the_view_is_a_failed_prediction(client: APIClient) -> None:
    response = post(client, "/score/", income=5, email=EMAIL, mode="conflict")
    assert response.status_code == 409
    event = PredictionEvent.objects.get(prediction_id=response[PREDICTION_ID_HEADER])
    assert event.status == "failed"
    assert event.error_type == "ml_audit.integrations.drf.PredictionNotServed"
    assert event.error_message == "the view answered HTTP 409"


def test_an_output_that_cannot_be_stored_is_recorded_failed_and_raised(client: APIClient) -> None:
    with pytest.raises(InvalidRecord, match="confidence"):
        post(client, "/score/", income=5, email=EMAIL, mode="bad-output")
    event = PredictionEvent.objects.get()
    assert event.status == "failed"
    assert event.error_type == "ml_audit.exceptions.InvalidRecord"


# ------------------------------------------------------------------------- ON_AUDIT_FAILURE


def test_fail_policy_withholds_the_prediction_with_503_and_spools_the_record(
    client: APIClient, audit_settings_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_settings_with(WRITE_RETRY_ATTEMPTS=0)
    assert audit_settings.ON_AUDIT_FAILURE == "fail"  # the default
    failing_writes(monkeypatch)
    response = post(client, "/score/", income=5000, email=EMAIL, mode="ok")
    assert response.status_code == 503
    assert response.data["detail"].code == "audit_unavailable"
    assert "score" not in response.data
    processor = get_pipeline().processor
    assert processor.stats()["spooled"] == 2  # the record, then its explanation
    monkeypatch.undo()
    result = processor.replay_spool(include_active=True)
    assert result.inserted == 2
    event = PredictionEvent.objects.get()
    assert (event.status, event.decision_outcome) == ("success", "flagged")
    assert event.explanation is not None
    assert event.explanation.method == "reason_codes"


def test_serve_policy_serves_and_spools(
    client: APIClient,
    audit_settings_with: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit_settings_with(WRITE_RETRY_ATTEMPTS=0, ON_AUDIT_FAILURE="serve")
    failing_writes(monkeypatch)
    with caplog.at_level(logging.ERROR, logger="ml_audit"):
        response = post(client, "/score/", income=5000, email=EMAIL, mode="ok")
    assert response.status_code == 200
    pid = response.data["prediction_id"]
    assert response.data["score"] == 0.9
    assert any(pid in r.getMessage() and "spooled" in r.getMessage() for r in caplog.records)
    assert get_pipeline().processor.stats()["spooled"] == 2  # the record and its explanation
    assert PredictionEvent.objects.count() == 0
    monkeypatch.undo()
    assert get_pipeline().processor.replay_spool(include_active=True).inserted == 2
    event = PredictionEvent.objects.get()
    assert event.prediction_id == pid
    assert event.explanation is not None
    assert event.explanation.revision == 1


def test_fail_policy_when_only_the_explanation_cannot_be_written(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection lost")

    monkeypatch.setattr("ml_audit.services.attach_explanation", down)
    response = post(client, "/score/", income=5000, email=EMAIL, mode="ok")
    assert response.status_code == 503
    # The prediction itself is recorded; its explanation waits in the spool.
    event = PredictionEvent.objects.get()
    assert event.explanation is None
    processor = get_pipeline().processor
    assert processor.stats()["spooled"] == 1
    monkeypatch.undo()
    result = processor.replay_spool(include_active=True)
    assert (result.inserted, result.duplicates) == (1, 0)
    event = PredictionEvent.objects.get()
    assert event.explanation is not None
    assert event.explanation.prediction_id == event.pk
    # Replaying again writes nothing twice.
    assert processor.replay_spool(include_active=True).replayed == 0
    assert event.explanations.count() == 1


def test_serve_policy_spools_an_explanation_whose_write_failed(
    client: APIClient, audit_settings_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_settings_with(ON_AUDIT_FAILURE="serve")

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection lost")

    monkeypatch.setattr("ml_audit.services.attach_explanation", down)
    response = post(client, "/score/", income=5000, email=EMAIL, mode="ok")
    assert response.status_code == 200
    assert get_pipeline().processor.stats()["spooled"] == 1
    monkeypatch.undo()
    assert get_pipeline().processor.replay_spool(include_active=True).inserted == 1
    assert PredictionEvent.objects.get(prediction_id=response.data["prediction_id"]).explanation


def test_the_setting_is_validated(audit_settings_with: Any) -> None:
    audit_settings_with(ON_AUDIT_FAILURE="maybe")
    with pytest.raises(ConfigurationError, match="ON_AUDIT_FAILURE"):
        _ = audit_settings.ON_AUDIT_FAILURE
    assert any("ON_AUDIT_FAILURE" in message.msg for message in run_checks())


# --------------------------------------------------------------------------- misuse, early


def test_decorator_arguments_are_checked_when_decorating() -> None:
    with pytest.raises(ValueError, match="on_audit_failure must be one of fail, serve"):
        audited_prediction(model_name="m", model_version="1", on_audit_failure="ignore")
    with pytest.raises(TypeError, match="decision_field"):
        audited_prediction(model_name="m", model_version="1", decision_field="")

    async def view(request: Any) -> None:
        return None

    with pytest.raises(TypeError, match="synchronous"):
        audited_prediction(model_name="m", model_version="1")(view)


def test_a_function_without_a_request_is_refused() -> None:
    @audited_prediction(model_name="m", model_version="1")
    def not_a_view(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="no request was found"):
        not_a_view(3)


# ------------------------------------------------------------------------ 0.2.0's contract


def test_a_view_decorated_the_0_2_0_way_records_and_explains(client: APIClient) -> None:
    views.BUILT_FOR.clear()
    response = client.post("/legacy/", {"amount": 1500, "email": EMAIL})  # a form, as 0.2.0's
    assert response.status_code == 200
    assert response.data["is_fraud"] is True
    assert response.data["fraud_probability"] == 0.9
    event = PredictionEvent.objects.get(prediction_id=response.data["prediction_id"])
    assert (event.model.model_name, event.model.version) == ("fraud_model", "1.0")
    assert event.environment == "prod"  # the third positional argument
    assert event.confidence == 0.9
    assert event.decision_outcome == "True"  # decision_field's value
    assert event.features == {"amount": "1500", "email": "*****"}
    assert [event] == views.BUILT_FOR  # the builder saw the stored row, as in 0.2.0
    explanation = event.explanation
    assert explanation is not None
    assert (explanation.method, explanation.payload) == ("auto", {"amount": 0.7})
    assert explanation.summary_text == "amount drove True"


def test_a_builder_returning_something_else_than_a_mapping_is_a_clear_error() -> None:
    from ml_audit.integrations.drf import _Explainer

    def not_a_mapping(features: Any, output: Any, prediction: Any) -> Any:
        return ["not", "a", "mapping"]

    explainer = _Explainer(not_a_mapping, {}, {})
    with pytest.raises(TypeError, match="explanation_builder must return None or a mapping"):
        explainer.build(None)
