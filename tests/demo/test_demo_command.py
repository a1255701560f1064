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
            "SELECT status, features, trace_id, error_type FROM ml_audit_predictionevent "
            "WHERE metadata NOT LIKE '%demo history%'"
        ).fetchall()
        explained = conn.execute(
            "SELECT COUNT(DISTINCT e.prediction_id) FROM ml_audit_explanation e "
            "JOIN ml_audit_predictionevent p ON p.id = e.prediction_id "
            "WHERE p.metadata NOT LIKE '%demo history%'"
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


def test_demo_records_subjects_reviews_outcomes_and_reason_codes(tmp_path: Path) -> None:
    """Issue #14's features, read from the demo's SQLite file independently of its --check."""
    db = tmp_path / "demo.sqlite3"
    result = run_demo(db, "--count", str(COUNT), "--weeks", "3", "--check")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "name their subject by a pseudonymous reference" in result.stdout
    assert "the subject report of an applicant lists" in result.stdout

    with sqlite3.connect(db) as conn:
        everything = "\n".join(
            repr(row)
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for row in conn.execute(f'SELECT * FROM "{table}"')
        )
        predictions = conn.execute(
            "SELECT subject_ref, features, metadata, decision_outcome, status, timestamp "
            "FROM ml_audit_predictionevent"
        ).fetchall()
        actions = dict(conn.execute("SELECT action, COUNT(*) FROM ml_audit_review GROUP BY action"))
        overrides = conn.execute(
            "SELECT p.decision_outcome, r.final_outcome FROM ml_audit_review r "
            "JOIN ml_audit_predictionevent p ON p.id = r.prediction_id "
            "WHERE r.action = 'override'"
        ).fetchall()
        outcomes = conn.execute("SELECT value, observed_at FROM ml_audit_outcome").fetchall()
        codes = [
            json.loads(codes)
            for codes, decision in conn.execute(
                "SELECT r.codes, p.decision_outcome FROM ml_audit_reasoncodes r "
                "JOIN ml_audit_predictionevent p ON p.id = r.prediction_id"
            )
            if decision == "decline"
        ]
    # No applicant id anywhere in the database (they all start APP- or HIST-).
    assert "APP-" not in everything
    assert "HIST-" not in everything
    # Every prediction names its subject by a reference, never by the id in its features.
    assert all(len(ref) == 64 for ref, *_ in predictions)
    assert all(json.loads(features)["applicant_id"] == "*****" for _, features, *_ in predictions)
    refs = [ref for ref, *_ in predictions]
    assert len(set(refs)) < len(refs)  # applicants who applied more than once
    history = [p for p in predictions if "demo history" in p[2]]
    assert len(history) == 3 * 30
    assert len({timestamp[:10] for *_, timestamp in history}) >= 10  # spread over weeks
    # Reviews of every kind; overrides change the decision they review.
    assert set(actions) == {
        "confirm",
        "override",
        "escalate",
        "contest_received",
        "contest_resolved",
    }
    assert overrides
    assert all(final in ("approve", "decline") for _, final in overrides)
    assert any(decision != final for decision, final in overrides)
    # Outcomes in the model's vocabulary, observed over the weeks before today.
    assert len(outcomes) >= 0.5 * len(history)
    assert {json.loads(value) for value, _ in outcomes} == {"approve", "decline"}
    assert len({observed[:10] for _, observed in outcomes}) >= 7
    # Declines carry reason codes from the demo's REASON_CODES.
    assert codes
    assert all(c and all(r["code"].startswith("R0") for r in c) for c in codes)


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
    recorded = [s for s in spans if s.name == "ml_audit.prediction credit_risk"]
    # The earlier weeks' decisions (recorded without a request) are spans of their own.
    history = [
        s
        for s in recorded
        if any(
            a.key == "ml_audit.metadata" and "demo history" in a.value.string_value
            for a in s.attributes
        )
    ]
    assert len(history) == 4 * 30
    assert all(not span.parent_span_id for span in history)
    predictions = [s for s in recorded if s not in history]
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
        assert len(attributes["ml_audit.subject.ref"]) == 64
        assert "APP-" not in json.dumps(attributes)  # the applicant id: only its reference
    resources = {
        a.key: a.value.string_value
        for request in received
        for rs in request.resource_spans
        for a in rs.resource.attributes
    }
    assert resources["service.name"] == "ml-audit-demo"
    assert resources["openinference.project.name"] == "ml-audit-demo"
