"""``manage.py demo``: the one command of the README, run for real in a subprocess.

It starts the demo site on a free loopback port, sends real HTTP requests through
DjangoInstrumentor, DRF and ``@audited_prediction``, and checks itself (``--check``); these
tests then read its SQLite file independently, and receive its OTLP export.
"""

from __future__ import annotations

import http.server
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.demo.conftest import DEMO_DIR

COUNT = 60


def demo_command(db: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of ``manage.py demo`` on ``db``, on any free port."""
    env = {**os.environ, "ML_AUDIT_DEMO_DB": str(db)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DATABASE_URL", None)
    return [sys.executable, str(DEMO_DIR / "manage.py"), "demo", "--port", "0", *args], env


def run_demo(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command, env = demo_command(db, "--no-serve", *args)
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False
    )


class _Receiver(http.server.BaseHTTPRequestHandler):
    requests: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        type(self).requests.append(message)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A minimal OTLP/HTTP trace receiver on loopback (Phoenix is the real one, in .ci/apm.sh)."""
    received: list[ExportTraceServiceRequest] = []
    handler = type("Receiver", (_Receiver,), {"requests": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    server.shutdown()
    server.server_close()


def test_demo_records_real_predictions_and_checks_itself(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    result = run_demo(db, "--count", str(COUNT), "--check", "--password", "pw-for-tests")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Check passed" in result.stdout
    assert f"{COUNT}/{COUNT} predictions" in result.stdout
    assert "password 'pw-for-tests'" in result.stdout

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT status, features, trace_id, error_type FROM ml_audit_predictionevent"
        ).fetchall()
        explained = conn.execute(
            "SELECT COUNT(DISTINCT prediction_id) FROM ml_audit_explanation"
        ).fetchone()[0]
        tenants = {t for (t,) in conn.execute("SELECT tenant_id FROM ml_audit_requestingactor")}
        actor_types = {
            t for (t,) in conn.execute("SELECT actor_type FROM ml_audit_requestingactor")
        }
    statuses = [status for status, *_ in rows]
    # Every application but the few invalid ones was scored and recorded.
    assert 0.85 * COUNT <= len(rows) < COUNT
    assert statuses.count("failed") >= 1  # outside the model's range: recorded as failures
    assert explained == statuses.count("success")
    assert {"acme-bank", "globex", "initech"} <= tenants
    assert actor_types == {"user", "service"}
    for _, features, trace_id, _ in rows:
        stored = json.loads(features)
        assert stored["email"] == "*****"
        assert stored["full_name"] == "*****"
        assert "@example.com" not in features
        assert len(trace_id) == 32
    failed = [error for status, _, _, error in rows if status == "failed"]
    assert set(failed) == {"demo_site.views.OutsideModelRange"}


def test_demo_exports_its_spans_over_otlp(
    tmp_path: Path, otlp_receiver: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    endpoint, received = otlp_receiver
    result = run_demo(
        tmp_path / "demo.sqlite3", "--count", "12", "--check", "--otlp-endpoint", endpoint
    )
    assert result.returncode == 0, result.stderr[-4000:]
    origin = endpoint.removesuffix("/v1/traces")
    assert f"traces    {origin}/redirects/traces/{{trace_id}}" in result.stdout
    assert "Check passed" in result.stdout  # which includes the API's trace links

    spans = [
        span
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    by_id = {span.span_id: span for span in spans}
    predictions = [s for s in spans if s.name == "ml_audit.prediction credit_risk"]
    assert len(predictions) >= 10
    with sqlite3.connect(tmp_path / "demo.sqlite3") as conn:
        stored = {t for (t,) in conn.execute("SELECT trace_id FROM ml_audit_predictionevent")}
    for span in predictions:
        # Each prediction is a child of its request's server span, in the row's trace.
        parent = by_id[span.parent_span_id]
        assert parent.kind == parent.SPAN_KIND_SERVER
        assert span.trace_id.hex() in stored
        attributes = {a.key: a.value.string_value for a in span.attributes}
        assert "@example.com" not in json.dumps(attributes)
    resources = {
        a.key: a.value.string_value
        for request in received
        for rs in request.resource_spans
        for a in rs.resource.attributes
    }
    assert resources["service.name"] == "ml-audit-demo"
    assert resources["openinference.project.name"] == "ml-audit-demo"
