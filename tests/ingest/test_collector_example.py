"""The Collector example routes exactly the spans the endpoint audits, unsampled."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ml_audit.ingest.spans import audit_kind
from ml_audit.otel import conventions

yaml = pytest.importorskip("yaml")  # PyYAML comes with the dev tools (schemathesis)

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "collector" / "otel-collector.yaml"


def _config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return loaded


def test_the_routing_condition_matches_what_the_endpoint_audits() -> None:
    route = _config()["connectors"]["routing"]["table"][0]
    assert route["pipelines"] == ["traces/audit"]
    pattern = re.fullmatch(r'IsMatch\(name, "(.*)"\)', route["condition"])
    assert pattern is not None
    regex = re.compile(pattern[1].replace("\\\\", "\\"))
    names = [
        conventions.prediction_span_name("fraud"),
        f"{conventions.EXPLANATION_SPAN_PREFIX} shap",
        conventions.PREDICTION_SPAN_PREFIX,
        "ml_audit.predictionist",
        "GET /score",
        "ml_audit.review x",
        "xml_audit.prediction fraud",
    ]
    for name in names:
        assert bool(regex.search(name)) == (audit_kind(name) is not None), name


def test_audit_spans_bypass_sampling_and_reach_the_endpoint_with_the_token() -> None:
    config = _config()
    pipelines = config["service"]["pipelines"]
    audit, apm = pipelines["traces/audit"], pipelines["traces/apm"]
    assert not any(p.startswith(("tail_sampling", "probabilistic")) for p in audit["processors"])
    assert "tail_sampling" in apm["processors"]
    exporter = config["exporters"][audit["exporters"][0]]
    assert audit["exporters"] == ["otlphttp/ml_audit"]
    assert exporter["headers"]["Authorization"].startswith("Bearer ${env:")
    assert exporter["retry_on_failure"]["enabled"] is True
    assert config["processors"]["batch/audit"]["send_batch_max_size"] == 512
