"""The demo's ``--otlp-endpoint``, against a real Phoenix: its prediction spans arrive there,
in the rows' traces and under their request spans (the imported earlier weeks' as roots), with
no PII; its trace links point there."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.apm.conftest import PhoenixServer
from tests.demo.test_demo_command import run_demo

pytestmark = pytest.mark.apm

COUNT = 15


def phoenix_spans(phoenix: PhoenixServer, project: str) -> list[dict[str, Any]]:
    url = f"{phoenix.url}/v1/projects/{urllib.parse.quote(project, safe='')}/spans?limit=1000"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise
    spans: list[dict[str, Any]] = body["data"]
    return spans


def test_demo_exports_to_phoenix(phoenix: PhoenixServer, tmp_path: Path) -> None:
    # Importable once tests.demo.conftest (imported with run_demo) has put the demo on the path.
    from demo_site.history import HISTORY_SOURCE

    project = f"ml-audit-demo-{uuid.uuid4().hex[:12]}"
    db = tmp_path / "demo.sqlite3"
    result = run_demo(
        db,
        "--count",
        str(COUNT),
        "--otlp-endpoint",
        f"{phoenix.url}/v1/traces",
        "--project",
        project,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"{phoenix.url}/redirects/traces/{{trace_id}}" in result.stdout
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT prediction_id, trace_id, metadata FROM ml_audit_predictionevent"
        ).fetchall()
    rows = {pid: trace_id for pid, trace_id, _ in stored}
    # The earlier weeks' decisions are imported by a batch job (demo_site.history), outside any
    # request: their spans are the roots of traces of their own.
    imported = {pid for pid, _, metadata in stored if HISTORY_SOURCE in (metadata or "")}
    assert 0 < len(imported) < len(rows)
    deadline = time.monotonic() + 30
    while True:
        spans = phoenix_spans(phoenix, project)
        predictions = [s for s in spans if s["name"] == "ml_audit.prediction credit_risk"]
        if len(predictions) >= len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(predictions) == len(rows), f"Phoenix log: {phoenix.log}"
    by_span_id = {s["context"]["span_id"]: s for s in spans}
    raw = json.dumps(spans)
    assert "@example.com" not in raw
    assert "4111 1111 1111 1111" not in raw
    for span in predictions:
        pid = span["attributes"]["ml_audit.prediction_id"]
        assert span["context"]["trace_id"] == rows[pid]
        if pid in imported:
            assert span["parent_id"] is None
            continue
        # The request's server span (Phoenix reports OpenTelemetry's span kind as UNKNOWN).
        parent = by_span_id[span["parent_id"]]
        assert parent["name"].startswith("POST ")
        assert parent["context"]["trace_id"] == rows[pid]
