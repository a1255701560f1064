"""What code written against django-ml-audit 0.2.0 relies on, beyond 0.2.0's own suite.

``.ci/compat-0.2.0.sh`` runs 0.2.0's tests against this package; these tests pin the rest of
its public surface and the choices we made where it and we differ.
"""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import NotSupportedError

from ml_audit import store
from ml_audit.exceptions import AppendOnlyError, InvalidRecord
from ml_audit.models import (
    ActorTypeChoice,
    Explanation,
    ExplanationStatus,
    FrameworkChoice,
    ModelVersion,
    PredictionEvent,
    PredictionStatus,
    RequestingActor,
)
from ml_audit.services import ActorPayload, attach_explanation

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("ml_audit.services", ("record_prediction_event", "ActorPayload", "attach_explanation")),
        ("ml_audit.services.recording", ("record_prediction_event", "ActorPayload")),
        ("ml_audit.services.explanations", ("attach_explanation",)),
        ("ml_audit.conf", ("get_redaction_config", "RedactionConfig")),
        (
            "ml_audit.models",
            (
                "ActorTypeChoice",
                "FrameworkChoice",
                "PredictionStatus",
                "ModelVersion",
                "RequestingActor",
                "PredictionEvent",
                "Explanation",
            ),
        ),
        ("ml_audit.integrations.drf", ("audited_prediction",)),
        (
            "ml_audit.api",
            (
                "ModelVersionSerializer",
                "RequestingActorSerializer",
                "ExplanationSerializer",
                "PredictionEventSerializer",
            ),
        ),
        ("ml_audit.api.views", ("PredictionEventViewSet", "ModelVersionViewSet")),
        (
            "ml_audit.admin",
            (
                "ModelVersionAdmin",
                "RequestingActorAdmin",
                "PredictionEventAdmin",
                "explanationnAdmin",
            ),
        ),
    ],
)
def test_every_public_name_of_0_2_0_imports(module: str, names: tuple[str, ...]) -> None:
    imported = importlib.import_module(module)
    missing = [name for name in names if not hasattr(imported, name)]
    assert missing == []


def test_choice_classes_have_0_2_0_values() -> None:
    assert FrameworkChoice.values == ["sklearn", "xgboost", "lightgbm", "other"]
    assert ActorTypeChoice.values == ["user", "service", "api_key", "job", "other"]
    assert PredictionStatus.values == ["success", "failed", "partial"]
    assert RequestingActor.ActorType is ActorTypeChoice
    assert PredictionEvent.Status is PredictionStatus
    assert set(PredictionStatus.values) <= set(ExplanationStatus.values)


def test_append_only_refusals_are_validation_errors_too() -> None:
    model = ModelVersion.objects.create(model_name="m", version="1")
    event = PredictionEvent.objects.create(prediction_id="p", model=model, features={"x": 1})
    event.confidence = 0.5
    with pytest.raises(ValidationError) as refused:
        event.save()
    assert isinstance(refused.value, AppendOnlyError)
    assert isinstance(refused.value, NotSupportedError)  # what our own callers catch
    assert "append-only" in str(refused.value)
    assert refused.value.messages == [str(refused.value)]
    with pytest.raises(ValidationError):
        event.delete()
    with pytest.raises(ValidationError):
        PredictionEvent.objects.filter(pk=event.pk).update(confidence=0.1)


def test_an_orm_created_prediction_is_recorded_like_a_call(exporter: Any) -> None:
    model = ModelVersion.objects.create(model_name="credit", version="2")
    actor = RequestingActor.objects.create(actor_type=ActorTypeChoice.USER, actor_id="u1")
    chosen = uuid.uuid4()
    event = PredictionEvent.objects.create(
        id=chosen,
        prediction_id="orm-1",
        model=model,
        actor=actor,
        client_ip="10.1.2.3",
        features={"income": 10, "email": EMAIL},
        output={"score": 0.4},
        confidence=0.4,
        status=PredictionStatus.SUCCESS,
    )
    row = PredictionEvent.objects.get(prediction_id="orm-1")
    assert row.pk == event.pk == chosen  # the id the caller chose is kept
    assert row.features == {"income": 10, "email": "*****"}  # redacted, unlike 0.2.0
    assert event.features == row.features  # the instance now holds what was stored
    assert row.content_hash
    assert store.verify_event(row)
    assert row.input_fingerprint == event.input_fingerprint != ""
    assert (row.model_id, row.actor_id, row.client_ip) == (model.pk, actor.pk, "10.1.2.3")
    assert not event._state.adding
    spans = [s for s in exporter.get_finished_spans() if s.name == "ml_audit.prediction credit"]
    assert len(spans) == 1  # the same path as record_prediction_event: a span


def test_orm_created_prediction_without_a_model_is_refused() -> None:
    with pytest.raises(InvalidRecord, match="model"):
        PredictionEvent.objects.create(prediction_id="no-model", features={})
    assert not PredictionEvent.objects.exists()


def test_an_orm_created_explanation_becomes_the_next_revision() -> None:
    model = ModelVersion.objects.create(model_name="m", version="1")
    event = PredictionEvent.objects.create(prediction_id="p", model=model, features={"x": 1})
    first = Explanation.objects.create(prediction=event, method="shap", payload={"x": 0.3})
    second = Explanation(prediction=event, method="shap", payload={"x": 0.4}, summary_text="s")
    second.save()
    assert (first.revision, second.revision) == (1, 2)
    assert first.status == PredictionStatus.SUCCESS
    assert first.generated_at is not None
    assert first.created_at is not None
    assert all(store.verify_explanation(row) for row in Explanation.objects.all())
    assert event.explanation is not None
    assert event.explanation.pk == second.pk


def test_record_prediction_event_takes_0_2_0_provenance_and_fingerprint() -> None:
    from ml_audit.services.recording import record_prediction_event

    event = record_prediction_event(
        model_name="fraud",
        model_version="3",
        features={"x": 1},
        output={"y": 2},
        framework=FrameworkChoice.XGBOOST,
        build_id="b-7",
        commit_hash="abc123",
        config_snapshot={"depth": 4},
        input_fingerprint="caller-fp",
        status=PredictionStatus.PARTIAL,
    )
    model = ModelVersion.objects.get(model_name="fraud", version="3")
    assert (model.framework, model.build_id, model.commit_hash) == ("xgboost", "b-7", "abc123")
    assert model.config_snapshot == {"depth": 4}
    assert event.metadata == {"input_fingerprint": "caller-fp"}
    assert len(event.input_fingerprint) == 64
    assert event.input_fingerprint != "caller-fp"
    assert event.status == "partial"
    # As in 0.2.0, provenance is set when the version is created, not changed afterwards.
    record_prediction_event(
        model_name="fraud", model_version="3", features={"x": 2}, framework="sklearn"
    )
    assert ModelVersion.objects.get(pk=model.pk).framework == "xgboost"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input_fingerprint": 7}, "input_fingerprint"),
        ({"input_fingerprint": "a", "metadata": {"input_fingerprint": "b"}}, "input_fingerprint"),
        ({"framework": 3}, "framework"),
        ({"config_snapshot": {"f": object()}}, "config_snapshot"),
    ],
)
def test_bad_0_2_0_arguments_are_refused_before_anything_is_written(
    kwargs: dict[str, Any], field: str
) -> None:
    from ml_audit.services.recording import record_prediction_event

    with pytest.raises(InvalidRecord) as refused:
        record_prediction_event(model_name="m", model_version="1", features={}, **kwargs)
    assert refused.value.field.startswith(field)
    assert not PredictionEvent.objects.exists()
    assert not ModelVersion.objects.exists()


def test_actor_payload_accepts_0_2_0_auth_token() -> None:
    actor = ActorPayload("service", "billing", auth_token={"scope": "read"})
    assert actor.auth_context == {"scope": "read"}
    assert actor.auth_token is None
    positional = ActorPayload("user", "1", None, None, None, {"scope": "read"})
    assert positional == actor.__class__("user", "1", auth_context={"scope": "read"})
    with pytest.raises(InvalidRecord, match="not both"):
        ActorPayload("user", "1", auth_context={"a": 1}, auth_token={"b": 2})


def test_get_redaction_config_answers_like_0_2_0(settings: Any) -> None:
    from ml_audit.conf import RedactionConfig, get_redaction_config

    settings.ML_AUDIT_REDACTION = {
        "ALLOWLIST": ["amount"],
        "DENYLIST": ["customer_code"],
        "MASK_VALUE": "[redacted]",
    }
    config = get_redaction_config()
    assert isinstance(config, RedactionConfig)
    assert config.mask_value == "[redacted]"
    assert config.allowlist == {"amount"}
    assert config.denylist == {"customer_code"}
    assert config.is_sensitive("email")
    assert config.is_sensitive("customer_code")
    assert not config.is_sensitive("amount")
    assert not config.is_sensitive("income")
    assert "password" in config.default_sensitive_names


def test_attach_explanation_takes_0_2_0_keywords_and_statuses() -> None:
    from ml_audit.services.recording import record_prediction_event

    event = record_prediction_event(model_name="m", model_version="1", features={"x": 1})
    explanation = attach_explanation(
        method="custom_reason_codes",
        prediction=event.prediction_id,
        payload={"x": 1.0},
        summary_text=None,  # type: ignore[arg-type]
        status=PredictionStatus.PARTIAL,
        method_version=None,  # type: ignore[arg-type]
        generated_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    )
    assert (explanation.status, explanation.summary_text, explanation.method_version) == (
        "partial",
        "",
        "",
    )
