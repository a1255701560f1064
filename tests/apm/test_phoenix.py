"""End to end against a real APM: audit spans exported over OTLP/HTTP to Arize Phoenix.

What is checked is what Phoenix *stores and serves back* (``GET /v1/projects/{project}/spans``),
not what the SDK handed to the exporter: the ids match the audit row, the payload is redacted,
and no raw PII string is anywhere in Phoenix's answer. Each test exports to a project of its own.

Phoenix's REST API returns no span links (its OTLP decoder keeps none), so an explanation is
tied to its prediction through the ``ml_audit.prediction_id`` attribute, and, attached outside
another trace, by being a child of the prediction's span in the prediction's trace.

The OpenInference attributes (``ml_audit.otel.openinference``) are checked as Phoenix reads
them: the span kind it serves, the input and output values it shows. A trace page, rendered by
Phoenix's own UI in a headless Chromium, is kept as a screenshot when ``ML_AUDIT_CHROMIUM``
names a Chromium (``.ci/apm.sh`` sets it, and ``ML_AUDIT_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from ml_audit.otel import setup
from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event
from tests.apm.conftest import PhoenixServer

pytestmark = [pytest.mark.apm, pytest.mark.django_db]

POLL_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.5
MODEL = "fraud-e2e"
FEATURES = {"age": 41, "email": "jane.doe@example.com", "notes": "card 4111 1111 1111 1111"}
SECRETS = ("jane.doe@example.com", "4111 1111 1111 1111", "4111111111111111")
ACTOR = ActorPayload(actor_type="user", actor_id="u-42", tenant_id="tenant-e2e")


@dataclass
class Apm:
    """A provider exporting to Phoenix, the project its spans land in, and the server."""

    provider: TracerProvider
    project: str
    phoenix: PhoenixServer

    def flush(self) -> None:
        assert self.provider.force_flush(timeout_millis=10_000), "force_flush timed out"

    def get_spans(self, **query: str) -> tuple[list[dict[str, Any]], str]:
        """All spans of the project (parsed) and Phoenix's raw answer; none before it exists.
        ``query``: Phoenix's filters (``trace_id=...``)."""
        project = urllib.parse.quote(self.project, safe="")
        filters = "".join(f"&{urllib.parse.urlencode({k: v})}" for k, v in query.items())
        url = f"{self.phoenix.url}/v1/projects/{project}/spans?limit=1000{filters}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                raw = response.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # the project is created when its first span is ingested
                return [], ""
            raise
        body = json.loads(raw)
        assert body["next_cursor"] is None, "more spans than one page: the project is not ours"
        spans: list[dict[str, Any]] = body["data"]
        return spans, raw

    def wait_for_span(self, name: str) -> tuple[dict[str, Any], str]:
        """The span called ``name`` once Phoenix serves it (bounded), and the raw answer."""
        deadline = time.monotonic() + POLL_TIMEOUT_S
        seen: list[str] = []
        while True:
            spans, raw = self.get_spans()
            matches = [span for span in spans if span["name"] == name]
            if matches:
                assert len(matches) == 1, f"{len(matches)} spans named {name!r}"
                return matches[0], raw
            seen = [span["name"] for span in spans]
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Phoenix did not serve a span {name!r} in project {self.project!r} within "
                    f"{POLL_TIMEOUT_S:.0f} s; it has {seen!r}; Phoenix log: {self.phoenix.log}"
                )
            time.sleep(POLL_INTERVAL_S)


@pytest.fixture
def exporting(phoenix: PhoenixServer) -> Iterator[Apm]:
    """An SDK provider that exports to Phoenix, into a fresh project."""
    project = f"ml-audit-e2e-{uuid.uuid4().hex[:12]}"
    provider = TracerProvider(
        resource=Resource.create(
            {"openinference.project.name": project, "service.name": "ml-audit-e2e"}
        )
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{phoenix.url}/v1/traces", timeout=10))
    )
    try:
        yield Apm(provider=provider, project=project, phoenix=phoenix)
    finally:
        provider.shutdown()


@pytest.fixture
def apm(exporting: Apm) -> Iterator[Apm]:
    """Audit spans come from the provider that exports to Phoenix."""
    pipeline = setup.install(exporting.provider)
    assert pipeline.provider is exporting.provider
    try:
        yield exporting
    finally:
        setup.uninstall()


def assert_no_secret(raw: str) -> None:
    for secret in SECRETS:
        assert secret not in raw, f"Phoenix serves the raw PII string {secret!r}"


def test_phoenix_ingests_a_plain_sdk_span(exporting: Apm) -> None:
    """Baseline without ml_audit: if this fails, the fault is in the set-up, not in ml_audit."""
    apm = exporting
    tracer = apm.provider.get_tracer("e2e-baseline")
    with tracer.start_as_current_span("baseline", attributes={"e2e.marker": "x1"}) as span:
        context = span.get_span_context()
    apm.flush()

    found, _ = apm.wait_for_span("baseline")

    assert found["context"] == {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
    }
    assert found["attributes"]["e2e.marker"] == "x1"


def test_prediction_reaches_phoenix_with_ids_of_the_row_and_redacted(apm: Apm) -> None:
    row = record_prediction_event(
        MODEL,
        "3",
        FEATURES,
        {"score": 0.91},
        decision_outcome="flagged",
        confidence=0.91,
        actor=ACTOR,
    )
    apm.flush()

    span, raw = apm.wait_for_span(f"ml_audit.prediction {MODEL}")

    assert_no_secret(raw)
    assert len(row.trace_id) == 32
    assert len(row.span_id) == 16
    assert span["context"]["trace_id"] == row.trace_id
    assert span["context"]["span_id"] == row.span_id
    attributes = span["attributes"]
    assert attributes["ml_audit.prediction_id"] == row.prediction_id
    assert attributes["ml_audit.actor.tenant_id"] == "tenant-e2e"
    assert attributes["ml_audit.decision_outcome"] == "flagged"
    features = json.loads(attributes["ml_audit.features"])
    assert features == {"age": 41, "email": "*****", "notes": "card *****"}
    assert features == row.features  # what the APM shows is what the audit trail holds


def test_explanation_reaches_phoenix_pointing_at_its_prediction(apm: Apm) -> None:
    row = record_prediction_event(MODEL, "3", FEATURES, {"score": 0.12}, actor=ACTOR)
    explanation = attach_explanation(
        row, "shap", {"age": 0.31, "notes": -0.07}, summary_text="age raised the score"
    )
    apm.flush()

    span, raw = apm.wait_for_span("ml_audit.explanation shap")
    prediction, _ = apm.wait_for_span(f"ml_audit.prediction {MODEL}")

    attributes = span["attributes"]
    assert attributes["ml_audit.prediction_id"] == row.prediction_id
    assert attributes["ml_audit.explanation.method"] == "shap"
    assert attributes["ml_audit.explanation.revision"] == explanation.revision == 1
    # The prediction it names is in Phoenix, as the row's span.
    assert prediction["attributes"]["ml_audit.prediction_id"] == row.prediction_id
    assert prediction["context"] == {"trace_id": row.trace_id, "span_id": row.span_id}
    assert span["context"]["span_id"] != row.span_id
    assert_no_secret(raw)


def phoenix_metadata(attributes: dict[str, Any]) -> Any:
    """The ``metadata`` attribute as Phoenix serves it: a JSON string, or the object it parsed
    (flattened into ``metadata.<key>`` entries of the REST answer)."""
    if "metadata" in attributes:
        value = attributes["metadata"]
        return json.loads(value) if isinstance(value, str) else value
    return {
        key.removeprefix("metadata."): value
        for key, value in attributes.items()
        if key.startswith("metadata.")
    }


def test_prediction_in_phoenix_has_a_span_kind_and_redacted_input_and_output(apm: Apm) -> None:
    row = record_prediction_event(
        MODEL,
        "3",
        FEATURES,
        {"score": 0.91},
        decision_outcome="flagged",
        confidence=0.91,
        actor=ACTOR,
    )
    apm.flush()

    span, raw = apm.wait_for_span(f"ml_audit.prediction {MODEL}")

    assert_no_secret(raw)
    assert span["span_kind"] == "CHAIN"  # Phoenix's own reading of openinference.span.kind
    attributes = span["attributes"]
    assert attributes["input.value"]
    assert attributes["output.value"]
    assert attributes["input.mime_type"] == "application/json"
    assert attributes["output.mime_type"] == "application/json"
    assert json.loads(attributes["input.value"]) == row.features
    assert row.features == {"age": 41, "email": "*****", "notes": "card *****"}
    assert json.loads(attributes["output.value"]) == {"score": 0.91}
    assert "user.id" not in attributes  # the raw actor id is never the APM's user id
    assert phoenix_metadata(attributes) == {
        "model": MODEL,
        "version": "3",
        "prediction_id": row.prediction_id,
        "decision": "flagged",
        "confidence": 0.91,
    }


def test_explanation_summary_is_on_a_span_of_the_predictions_trace(apm: Apm) -> None:
    row = record_prediction_event(MODEL, "3", FEATURES, {"score": 0.12}, actor=ACTOR)
    attach_explanation(
        row,
        "shap",
        {"shap_values": {"age": 0.31, "notes": -0.07}, "base_value": -1.0},
        summary_text="age raised the score; mailed to jane.doe@example.com",
        method_version="0.45",
    )
    apm.flush()
    apm.wait_for_span("ml_audit.explanation shap")

    spans, raw = apm.get_spans(trace_id=row.trace_id)  # the prediction's trace, by Phoenix

    assert_no_secret(raw)
    by_name = {span["name"]: span for span in spans}
    assert set(by_name) == {f"ml_audit.prediction {MODEL}", "ml_audit.explanation shap"}
    explanation = by_name["ml_audit.explanation shap"]
    assert explanation["context"]["trace_id"] == row.trace_id
    assert explanation["parent_id"] == row.span_id  # shown under its prediction
    assert explanation["span_kind"] == "TOOL"
    attributes = explanation["attributes"]
    summary = "age raised the score; mailed to *****"
    assert attributes["output.value"] == summary
    assert attributes["ml_audit.explanation.summary"] == summary
    assert json.loads(attributes["ml_audit.explanation.top_attributions"]) == {
        "age": 0.31,
        "notes": -0.07,
    }
    assert attributes["ml_audit.explanation.method_version"] == "0.45"
    assert attributes["ml_audit.prediction_id"] == row.prediction_id


def test_phoenix_trace_page_screenshot(apm: Apm, tmp_path: Path) -> None:
    """Phoenix's own trace page of a prediction and its explanation, in headless Chromium."""
    chromium = os.environ.get("ML_AUDIT_CHROMIUM", "")
    if not (chromium and os.access(chromium, os.X_OK)):
        pytest.skip("set ML_AUDIT_CHROMIUM to a Chromium binary (.ci/apm.sh does)")
    from tests.browser.test_admin_browser import Chromium

    row = record_prediction_event(
        MODEL,
        "3",
        FEATURES,
        {"score": 0.91},
        decision_outcome="flagged",
        confidence=0.91,
        actor=ACTOR,
    )
    attach_explanation(row, "shap", {"age": 0.31, "notes": -0.07}, summary_text="age mattered")
    apm.flush()
    apm.wait_for_span("ml_audit.explanation shap")

    browser = Chromium(chromium, tmp_path / "chromium-profile")
    try:
        browser.open_page()
        browser.send("Page.navigate", {"url": f"{apm.phoenix.url}/redirects/traces/{row.trace_id}"})
        # The trace view: the span tree with both spans, the selected (root) prediction span's
        # input and output.
        browser.wait_for(
            "(() => { const t = document.body ? document.body.innerText : '';"
            f" return t.includes({json.dumps(f'ml_audit.prediction {MODEL}')})"
            " && t.includes('ml_audit.explanation shap') && t.includes('card *****')"
            " && t.includes('score'); })()",
            timeout=60,
        )
        time.sleep(1.0)  # let the last panels lay out
        page = browser.evaluate(
            "({url: location.href, text: document.body.innerText,"
            " html: document.documentElement.outerHTML})"
        )
        directory = Path(os.environ.get("ML_AUDIT_SCREENSHOT_DIR") or tmp_path)
        shot = browser.screenshot(directory / "phoenix-trace.png")
    finally:
        browser.close()

    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert row.trace_id in page["url"]
    for secret in SECRETS:
        assert secret not in page["html"]
    assert "Input" in page["text"]
    assert "Output" in page["text"]
