"""The OpenInference attributes of audit spans (ml_audit.otel.openinference), as exported.

Spans are read from the SDK's InMemorySpanExporter (the ``exporter`` fixture): what an APM
receives, not what encode() returned.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.checks import run_checks
from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError
from ml_audit.models import PredictionEvent
from ml_audit.otel import conventions
from ml_audit.otel import openinference as oi
from ml_audit.otel.conventions import ATTR
from ml_audit.otel.spans import emit_explanation_span, prediction_span
from ml_audit.records import ActorPayload, PredictionRecord
from ml_audit.redaction import RedactionPolicy
from ml_audit.services import attach_explanation, record_prediction_event

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
SECRETS = (EMAIL, CARD, "4111111111111111")
FEATURES = {"age": 41, "email": EMAIL, "notes": f"card {CARD}", "income": 52000}
ACTOR = ActorPayload("user", "raw-actor-u42", tenant_id="t1")


def span_named(exporter: InMemorySpanExporter, prefix: str) -> Any:
    (span,) = [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]
    return span


def attributes_of(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def exported_text(exporter: InMemorySpanExporter) -> str:
    return json.dumps(
        [
            [dict(s.attributes or {}), [dict(e.attributes or {}) for e in s.events]]
            for s in exporter.get_finished_spans()
        ],
        ensure_ascii=False,
    )


def predict(**kwargs: Any) -> PredictionEvent:
    """A synchronous prediction through prediction_span; the stored row."""
    outcome = kwargs.pop("outcome", {"output": {"score": 0.91, "label": "fraud"}})
    with prediction_span(
        model_name=kwargs.pop("model_name", "fraud"),
        model_version="3",
        features=kwargs.pop("features", FEATURES),
        actor=kwargs.pop("actor", ACTOR),
        mode="sync",
        **kwargs,
    ) as p:
        p.set_output(
            outcome["output"],
            confidence=outcome.get("confidence", 0.91),
            decision_outcome=outcome.get("decision_outcome", "flagged"),
        )
    return PredictionEvent.objects.get(prediction_id=p.prediction_id)


def redacted_record(**overrides: Any) -> PredictionRecord:
    kwargs: dict[str, Any] = {
        "model_name": "fraud",
        "model_version": "3",
        "features": FEATURES,
        "output": {"score": 0.5},
    }
    kwargs.update(overrides)
    return PredictionRecord.create(**kwargs).redact(RedactionPolicy(), frozenset({"features"}))


# --- prediction spans -----------------------------------------------------------------------


@pytest.mark.django_db
def test_prediction_span_has_kind_redacted_input_output_metadata_and_tags(
    exporter: InMemorySpanExporter,
) -> None:
    row = predict()
    attributes = attributes_of(span_named(exporter, "ml_audit.prediction"))

    assert attributes["openinference.span.kind"] == "CHAIN"
    assert attributes["input.mime_type"] == "application/json"
    assert attributes["output.mime_type"] == "application/json"
    # The redacted features, as the audit row holds them: no e-mail, no card number.
    assert json.loads(attributes["input.value"]) == row.features
    assert row.features == {"age": 41, "email": "*****", "notes": "card *****", "income": 52000}
    assert attributes["input.value"] == attributes[ATTR.FEATURES]
    assert json.loads(attributes["output.value"]) == {"score": 0.91, "label": "fraud"}
    assert json.loads(attributes["metadata"]) == {
        "model": "fraud",
        "version": "3",
        "prediction_id": row.prediction_id,
        "decision": "flagged",
        "confidence": 0.91,
    }
    assert attributes["tag.tags"] == ("ml_audit.prediction", "model:fraud", "decision:flagged")
    text = exported_text(exporter)
    for secret in SECRETS:
        assert secret not in text
    # The raw actor id is never the APM's user id.
    assert "user.id" not in attributes
    assert "session.id" not in attributes


def test_input_value_is_the_features_string_itself_not_a_second_serialisation() -> None:
    record = redacted_record()
    for max_length in (None, 20):
        attributes = conventions.encode(record, max_length=max_length, openinference=True)
        assert attributes["input.value"] is attributes[ATTR.FEATURES]
        assert attributes["output.value"] is attributes[ATTR.OUTPUT]


def test_literal_attribute_names_are_the_packages_names() -> None:
    """encode() writes literal keys (speed); they must be OpenInference's own names."""
    record = redacted_record(metadata={"user_id": "p-1", "session_id": "s-1"})
    attributes = conventions.encode(record, openinference=True)
    written = set(attributes) - set(conventions.encode(record, openinference=False))
    assert written == {
        SpanAttributes.OPENINFERENCE_SPAN_KIND,
        SpanAttributes.INPUT_VALUE,
        SpanAttributes.INPUT_MIME_TYPE,
        SpanAttributes.OUTPUT_VALUE,
        SpanAttributes.OUTPUT_MIME_TYPE,
        SpanAttributes.METADATA,
        SpanAttributes.TAG_TAGS,
        SpanAttributes.USER_ID,
        SpanAttributes.SESSION_ID,
    }
    assert written <= oi.NAMES
    kinds = {k.value for k in OpenInferenceSpanKindValues}
    assert attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND] == oi.PREDICTION_KIND
    assert {oi.PREDICTION_KIND, oi.EXPLANATION_KIND, oi.REVIEW_KIND} <= kinds
    assert "UNKNOWN" not in {oi.PREDICTION_KIND, oi.EXPLANATION_KIND, oi.REVIEW_KIND}


@pytest.mark.django_db
def test_user_and_session_ids_come_only_from_the_callers_metadata(
    exporter: InMemorySpanExporter,
) -> None:
    row = predict(metadata={"user_id": "pseudo-7f3a", "session_id": 12345})
    attributes = attributes_of(span_named(exporter, "ml_audit.prediction"))

    assert attributes["user.id"] == "pseudo-7f3a"
    assert attributes["session.id"] == "12345"
    assert "raw-actor-u42" not in attributes["user.id"]
    assert row.actor is not None
    assert attributes[ATTR.ACTOR_ID] == row.actor.actor_id == "raw-actor-u42"


@pytest.mark.django_db
def test_user_id_is_the_redacted_metadata_value(
    exporter: InMemorySpanExporter, settings: Any
) -> None:
    """With metadata redaction on, a masked value is no id (it would make every prediction one
    user); a pseudonym (hash mode) is, and is stable."""
    settings.ML_AUDIT = {"REDACT_PAYLOADS": ["features", "metadata"]}
    predict(metadata={"user_id": EMAIL, "session_id": "sess-1"})  # session_id: sensitive
    attributes = attributes_of(span_named(exporter, "ml_audit.prediction"))
    assert json.loads(attributes[ATTR.METADATA]) == {"user_id": "*****", "session_id": "*****"}
    assert "user.id" not in attributes
    assert "session.id" not in attributes

    exporter.clear()
    settings.ML_AUDIT = {
        "REDACT_PAYLOADS": ["features", "metadata"],
        "REDACTION": {"MODE": "hash", "HASH_KEY": "k" * 32},
    }
    for _ in range(2):
        predict(metadata={"user_id": EMAIL, "session_id": "sess-1", "other": ["x"]})
    spans = [attributes_of(s) for s in exporter.get_finished_spans()]
    assert len(spans) == 2
    for attributes in spans:
        assert attributes["user.id"].startswith("hmac-sha256:")
        assert attributes["session.id"].startswith("hmac-sha256:")
    assert spans[0]["user.id"] == spans[1]["user.id"] != spans[0]["session.id"]
    assert EMAIL not in exported_text(exporter)
    assert "sess-1" not in exported_text(exporter)


def test_caller_ids_are_strings_or_integers_only() -> None:
    metadata = {"user_id": ["a"], "session_id": 7}
    redaction: dict[str, Any] = {"policy": "v", "paths": {}}
    assert oi.caller_id(metadata, "user_id", None, redaction) is None
    assert oi.caller_id(metadata, "session_id", None, redaction) == "7"
    assert oi.caller_id({"user_id": ""}, "user_id", None, redaction) is None
    assert oi.caller_id({"user_id": "abcdef"}, "user_id", 4, redaction) == "abc…"


@pytest.mark.django_db
def test_setting_off_emits_none_of_the_openinference_attributes(
    exporter: InMemorySpanExporter, settings: Any
) -> None:
    settings.ML_AUDIT = {"SPAN_CONVENTIONS": ["ml_audit"]}
    row = predict(metadata={"user_id": "p", "session_id": "s"})
    attach_explanation(row, "shap", {"age": 0.3}, summary_text="age raised the score")

    prediction = attributes_of(span_named(exporter, "ml_audit.prediction"))
    explanation = attributes_of(span_named(exporter, "ml_audit.explanation"))
    assert not oi.NAMES & set(prediction)
    assert not oi.NAMES & set(explanation)
    assert prediction[ATTR.PREDICTION_ID] == row.prediction_id  # the contract is still there
    assert explanation[ATTR.EXPLANATION_SUMMARY] == "age raised the score"


@pytest.mark.django_db
def test_payload_export_off_leaves_out_input_output_user_and_session(
    exporter: InMemorySpanExporter, settings: Any
) -> None:
    settings.ML_AUDIT = {"EXPORT_PAYLOADS": False}
    row = predict(metadata={"user_id": "p", "session_id": "s"})
    attach_explanation(row, "shap", {"age": 0.3}, summary_text="age raised the score")

    prediction = attributes_of(span_named(exporter, "ml_audit.prediction"))
    explanation = attributes_of(span_named(exporter, "ml_audit.explanation"))
    for name in ("input.value", "input.mime_type", "output.value", "output.mime_type"):
        assert name not in prediction
        assert name not in explanation
    assert "user.id" not in prediction
    assert "session.id" not in prediction
    assert ATTR.EXPLANATION_SUMMARY not in explanation
    assert ATTR.EXPLANATION_TOP_ATTRIBUTIONS not in explanation
    # What is no payload stays: the kind, the identity and decision, the tags.
    assert prediction["openinference.span.kind"] == "CHAIN"
    assert json.loads(prediction["metadata"])["prediction_id"] == row.prediction_id
    assert explanation["openinference.span.kind"] == "TOOL"
    assert "age raised" not in exported_text(exporter)


@pytest.mark.django_db
def test_max_attribute_length_cuts_the_new_attributes_too(
    exporter: InMemorySpanExporter, settings: Any
) -> None:
    settings.ML_AUDIT = {"EXPORT_MAX_ATTRIBUTE_LENGTH": 24}
    long_decision = "d" * 40
    row = predict(
        outcome={"output": {"text": "x" * 100}, "decision_outcome": long_decision},
        metadata={"session_id": "s" * 50},
    )
    attach_explanation(
        row, "shap", {f"f{i}": i for i in range(30)}, summary_text="a long summary " * 10
    )

    prediction = attributes_of(span_named(exporter, "ml_audit.prediction"))
    explanation = attributes_of(span_named(exporter, "ml_audit.explanation"))
    for attributes, names in (
        (prediction, ("input.value", "output.value", "metadata", "session.id")),
        (explanation, ("output.value", "metadata", ATTR.EXPLANATION_SUMMARY)),
        (explanation, (ATTR.EXPLANATION_TOP_ATTRIBUTIONS,)),
    ):
        for name in names:
            assert len(attributes[name]) == 24, name
            assert attributes[name].endswith("…"), name
    assert prediction["input.value"] == prediction[ATTR.FEATURES]
    assert all(len(tag) <= 24 for tag in prediction["tag.tags"])
    assert f"decision:{long_decision}" not in prediction["tag.tags"]


@pytest.mark.django_db
def test_failed_prediction_keeps_error_status_and_exception_event(
    exporter: InMemorySpanExporter,
) -> None:
    with (
        pytest.raises(ZeroDivisionError),
        prediction_span(model_name="fraud", model_version="3", features=FEATURES, mode="sync"),
    ):
        raise ZeroDivisionError(f"bad input from {EMAIL}")

    span = span_named(exporter, "ml_audit.prediction")
    attributes = attributes_of(span)
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "builtins.ZeroDivisionError"
    assert attributes["openinference.span.kind"] == "CHAIN"
    assert "output.value" not in attributes  # no output to show
    assert json.loads(attributes["input.value"])["email"] == "*****"
    assert "status:failed" in attributes["tag.tags"]
    assert EMAIL not in exported_text(exporter)


def test_decode_ignores_the_openinference_attributes() -> None:
    import dataclasses

    record = dataclasses.replace(
        redacted_record(metadata={"user_id": "u", "session_id": "s"}, confidence=0.5),
        trace_id="ab" * 16,
        span_id="cd" * 8,
    )
    attributes = conventions.encode(record, openinference=True)
    assert "input.value" in attributes
    ids = {"trace_id": record.trace_id, "span_id": record.span_id}
    assert conventions.decode(attributes, **ids) == record
    # Whatever they hold: another sender's (or a tampered) OpenInference view changes nothing.
    tampered = {**attributes, "input.value": "{not json", "metadata": "x", "user.id": "z"}
    tampered["output.value"] = json.dumps({"score": 0.99})
    assert conventions.decode(tampered, **ids) == record


def test_encode_follows_the_setting_by_default(settings: Any) -> None:
    record = redacted_record()
    assert "openinference.span.kind" in conventions.encode(record)
    settings.ML_AUDIT = {"SPAN_CONVENTIONS": ("ml_audit",)}
    assert "openinference.span.kind" not in conventions.encode(record)


# --- the setting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("openinference", "list or tuple"),
        (None, "list or tuple"),
        ([], "list or tuple"),
        (["ml_audit", 3], "list or tuple"),
        (["ml_audit", "otel-genai"], "unknown convention.*'otel-genai'"),
        (["openinference"], 'must include "ml_audit"'),
    ],
)
def test_invalid_span_conventions_raise_a_clear_error(
    value: object, message: str, settings: Any
) -> None:
    settings.ML_AUDIT = {"SPAN_CONVENTIONS": value}
    with pytest.raises(ConfigurationError, match=message):
        getattr(audit_settings, "SPAN_CONVENTIONS")  # noqa: B009
    assert "ml_audit.E001" in [m.id for m in run_checks()]


def test_span_conventions_default_and_valid_values(settings: Any) -> None:
    assert frozenset({"ml_audit", "openinference"}) == audit_settings.SPAN_CONVENTIONS
    settings.ML_AUDIT = {"SPAN_CONVENTIONS": ["ml_audit"]}
    assert frozenset({"ml_audit"}) == audit_settings.SPAN_CONVENTIONS


# --- explanation spans ----------------------------------------------------------------------


@pytest.mark.django_db
def test_explanation_span_carries_redacted_content(exporter: InMemorySpanExporter) -> None:
    row = predict()
    weights = {f"f{i:02d}": (-1) ** i * i / 10 for i in range(14)}  # |values| 0.0 .. 1.3
    attach_explanation(
        row,
        "shap",
        {"shap_values": weights, "base_value": -1.2},
        summary_text=f"f13 raised the risk; contact {EMAIL}",
        method_version="0.45.1",
    )

    attributes = attributes_of(span_named(exporter, "ml_audit.explanation"))
    assert attributes[ATTR.EXPLANATION_METHOD] == "shap"
    assert attributes[ATTR.EXPLANATION_METHOD_VERSION] == "0.45.1"
    assert attributes[ATTR.EXPLANATION_SUMMARY] == "f13 raised the risk; contact *****"
    top = json.loads(attributes[ATTR.EXPLANATION_TOP_ATTRIBUTIONS])
    assert list(top) == [f"f{i:02d}" for i in range(13, 3, -1)]
    assert top["f13"] == pytest.approx(-1.3)
    assert top["f12"] == pytest.approx(1.2)
    assert attributes["openinference.span.kind"] == "TOOL"
    assert attributes["tool.name"] == "shap"
    assert attributes["output.value"] == attributes[ATTR.EXPLANATION_SUMMARY]
    assert attributes["output.mime_type"] == "text/plain"
    assert json.loads(attributes["input.value"]) == {"prediction_id": row.prediction_id}
    assert json.loads(attributes["metadata"]) == {
        "prediction_id": row.prediction_id,
        "method": "shap",
        "method_version": "0.45.1",
        "revision": 1,
        "status": "success",
    }
    assert attributes["tag.tags"] == ("ml_audit.explanation", "method:shap", "status:success")
    assert EMAIL not in exported_text(exporter)


@pytest.mark.django_db
def test_explanation_without_summary_shows_its_attributions_as_output(
    exporter: InMemorySpanExporter,
) -> None:
    row = predict()
    attach_explanation(row, "lime", [{"feature": "age", "weight": 0.2}, ["income", -0.4]])

    attributes = attributes_of(span_named(exporter, "ml_audit.explanation"))
    assert ATTR.EXPLANATION_SUMMARY not in attributes
    assert json.loads(attributes["output.value"]) == {"income": -0.4, "age": 0.2}
    assert attributes["output.mime_type"] == "application/json"


@pytest.mark.django_db
def test_explanation_in_the_same_trace_is_a_child_of_the_prediction_span(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("POST /score") as request:
        row = record_prediction_event("fraud", "3", FEATURES, {"score": 0.2})
        attach_explanation(row, "shap", {"age": 0.3}, summary_text="age")

    prediction = span_named(exporter, "ml_audit.prediction")
    explanation = span_named(exporter, "ml_audit.explanation")
    assert prediction.parent.span_id == request.get_span_context().span_id
    assert explanation.context.trace_id == prediction.context.trace_id
    assert explanation.parent.span_id == prediction.context.span_id
    assert explanation.context.trace_flags == request.get_span_context().trace_flags
    assert not explanation.links
    # The prediction span had ended before its child started: valid, and what happened.
    assert explanation.start_time >= prediction.end_time


@pytest.mark.django_db
def test_explanation_in_the_prediction_span_itself_is_its_child(
    exporter: InMemorySpanExporter,
) -> None:
    row = record_prediction_event("fraud", "3", FEATURES, {"score": 0.2})
    exporter.clear()
    tracer = trace.get_tracer("app")
    # The prediction span as the current span (as while its block is open).
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    current = SpanContext(
        int(row.trace_id, 16), int(row.span_id, 16), False, TraceFlags(TraceFlags.SAMPLED)
    )
    with trace.use_span(NonRecordingSpan(current)):
        attach_explanation(row, "shap", {"age": 0.3})
    explanation = span_named(exporter, "ml_audit.explanation")
    assert explanation.parent.span_id == int(row.span_id, 16)
    assert f"{explanation.context.trace_id:032x}" == row.trace_id
    assert tracer is not None


@pytest.mark.django_db
def test_explanation_from_another_trace_is_linked_to_the_prediction(
    exporter: InMemorySpanExporter,
) -> None:
    row = record_prediction_event("fraud", "3", FEATURES, {"score": 0.2})
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("GET /review") as later:
        attach_explanation(row, "shap", {"age": 0.3})

    explanation = span_named(exporter, "ml_audit.explanation")
    later_context = later.get_span_context()
    assert explanation.context.trace_id == later_context.trace_id
    assert explanation.parent.span_id == later_context.span_id
    (link,) = explanation.links
    assert f"{link.context.trace_id:032x}" == row.trace_id
    assert f"{link.context.span_id:016x}" == row.span_id
    assert attributes_of(explanation)[ATTR.PREDICTION_ID] == row.prediction_id


@pytest.mark.django_db
def test_explanation_of_a_prediction_without_span_ids_names_it_only(
    exporter: InMemorySpanExporter,
) -> None:
    emit_explanation_span(
        prediction_id="p-1", trace_id="", span_id="", method="shap", revision=1, status="success"
    )
    explanation = span_named(exporter, "ml_audit.explanation")
    assert explanation.parent is None
    assert not explanation.links
    assert attributes_of(explanation)[ATTR.PREDICTION_ID] == "p-1"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"a": 0.1, "b": -0.5, "c": 0.3}, {"b": -0.5, "c": 0.3, "a": 0.1}),
        ({"attributions": {"x": 2, "y": -3}, "base": 1.0}, {"y": -3, "x": 2}),
        ({"contributions": [{"name": "x", "contribution": 0.5}]}, {"x": 0.5}),
        ([["x", 1.5], ["y", "n/a"], ["z", -2.0]], {"z": -2, "x": 1.5}),
        ({"a": True, "b": "text", "c": None, "d": float("nan")}, {}),
        ("free text", {}),
        (None, {}),
    ],
)
def test_top_attributions_reads_common_payload_shapes(payload: Any, expected: Any) -> None:
    top = oi.top_attributions(payload)
    assert top == expected
    assert list(top) == list(expected)


def test_top_attributions_keeps_the_ten_largest_by_absolute_value() -> None:
    payload = {f"f{i}": (-1) ** i * i for i in range(25)}
    top = oi.top_attributions(payload)
    assert list(top) == [f"f{i}" for i in range(24, 14, -1)]
    assert top["f23"] == -23


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"environment": "prod", "correlation_id": "req-1", "latency_ms": 0.0, "confidence": 0.0},
        {"status": "failed", "error_type": "E", "error_message": "m", "decision_outcome": ""},
    ],
)
@pytest.mark.parametrize(
    "actor",
    [None, ActorPayload("user", "u1"), ActorPayload("service", "s", "t", "10.0.0.1", "ua/1")],
)
def test_unrolled_optional_attributes_follow_the_field_tables(
    changes: dict[str, Any], actor: ActorPayload | None
) -> None:
    """encode() writes the optional attributes unrolled; they must be what the tables say."""
    import dataclasses

    record = dataclasses.replace(redacted_record(actor=actor), **changes)
    attributes = conventions.encode(record, openinference=False)
    expected = [
        (name, getattr(record, field))
        for name, field in conventions._OPTIONAL_RECORD_ATTRIBUTES
        if getattr(record, field) not in (None, "")
    ]
    if actor is not None:
        expected += [
            (name, getattr(actor, field))
            for name, field in conventions._OPTIONAL_ACTOR_ATTRIBUTES
            if getattr(actor, field) not in (None, "")
        ]
    names = {name for name, _ in expected}
    optional = {n for n, _ in conventions._OPTIONAL_RECORD_ATTRIBUTES} | {
        n for n, _ in conventions._OPTIONAL_ACTOR_ATTRIBUTES
    }
    assert [(k, v) for k, v in attributes.items() if k in optional] == expected
    assert names <= set(attributes)


@pytest.mark.parametrize("overrides", [{}, {"decision_outcome": "ok", "confidence": 0.25}])
def test_inline_metadata_and_tags_are_the_modules(overrides: dict[str, Any]) -> None:
    record = redacted_record(**overrides)
    attributes = conventions.encode(record, openinference=True)
    assert attributes["metadata"] == oi.prediction_metadata(
        conventions._dumps,
        record.model_name,
        record.model_version,
        record.prediction_id,
        record.decision_outcome,
        record.confidence,
    )
    oi.TAG_CACHE.clear()
    fresh = conventions.encode(record, openinference=True)["tag.tags"]
    assert fresh == attributes["tag.tags"]
    assert fresh == oi.prediction_tags(record.model_name, record.decision_outcome, "success")
