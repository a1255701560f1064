"""``manage.py demo --otlp-endpoint``: checked before anything starts, and no dead trace links.

The admin and the API build a trace link for every row with a trace id, from one template; so
the demo sets the template only with an endpoint, and such a run starts on a fresh database:
every row in it is then a prediction whose spans went to that endpoint.
"""

from __future__ import annotations

import http.server
import os
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_site.management.commands.demo import (
    Command,
    check_otlp_endpoint,
    remove_sqlite_database,
)
from django.core.management import CommandError, call_command
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.demo.test_demo_command import _Receiver, demo_command, run_demo


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP trace receiver on loopback: its URL and what it received."""
    received: list[ExportTraceServiceRequest] = []
    handler = type("Receiver", (_Receiver,), {"requests": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    server.shutdown()
    server.server_close()


def exported_trace_ids(received: list[ExportTraceServiceRequest]) -> set[str]:
    return {
        span.trace_id.hex()
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    }


def stored_trace_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [t for (t,) in conn.execute("SELECT trace_id FROM ml_audit_predictionevent")]


# --- nothing listening at the endpoint ---------------------------------------------------------


def test_an_endpoint_nothing_listens_at_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    endpoint = f"http://127.0.0.1:{unused_port()}/v1/traces"
    command, env = demo_command(db, "--no-serve", "--count", "5", "--otlp-endpoint", endpoint)
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"CommandError: Nothing listens at {endpoint} (")
    assert "phoenix serve" in lines[0]
    output = result.stdout + result.stderr
    for noise in ("Traceback", "Failed to export", "while exporting", "opentelemetry"):
        assert noise not in output  # no traceback, no exporter log
    assert "Migrating" not in result.stdout  # it stopped before doing anything
    assert not db.exists()


def test_check_otlp_endpoint_passes_when_something_listens() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_otlp_endpoint(f"http://127.0.0.1:{listening.getsockname()[1]}/v1/traces")


@pytest.mark.parametrize(
    "url", ["127.0.0.1:6006/v1/traces", "ftp://127.0.0.1:6006/", "http:///v1/traces", "http://h:x/"]
)
def test_check_otlp_endpoint_wants_an_http_url(url: str) -> None:
    with pytest.raises(CommandError, match=r"must be an http\(s\) URL"):
        check_otlp_endpoint(url)


def test_check_otlp_endpoint_says_nothing_listens() -> None:
    url = f"http://127.0.0.1:{unused_port()}/v1/traces"
    with pytest.raises(CommandError, match=f"^Nothing listens at {url} .*phoenix serve"):
        check_otlp_endpoint(url)


# --- trace links only to traces the APM received -----------------------------------------------


def test_a_rerun_with_an_endpoint_links_no_row_it_did_not_export(
    tmp_path: Path, receiver: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    db = tmp_path / "demo.sqlite3"
    first = run_demo(db, "--count", "6")  # nothing exported
    assert first.returncode == 0, first.stderr[-4000:]
    assert stored_trace_ids(db)
    endpoint, received = receiver
    rerun = run_demo(db, "--count", "6", "--check", "--otlp-endpoint", endpoint)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-4000:]
    assert "Starting on a fresh database" in rerun.stdout
    assert "Check passed" in rerun.stdout  # the API's trace links follow the template
    stored = stored_trace_ids(db)
    assert stored
    # Every row gets a trace link: every row's trace is one the endpoint received.
    assert set(stored) <= exported_trace_ids(received)


def test_without_an_endpoint_there_are_no_trace_links(tmp_path: Path) -> None:
    command, env = demo_command(tmp_path / "demo.sqlite3", "--no-serve", "--count", "6")
    # Even if the environment names a template: nothing was exported, nothing to link to.
    env["ML_AUDIT_DEMO_TRACE_URL_TEMPLATE"] = "http://127.0.0.1:6006/redirects/traces/{trace_id}"
    result = subprocess.run(
        [*command, "--check"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Check passed" in result.stdout  # which includes: the API's trace_url is None
    assert "traces " not in result.stdout


def test_a_trace_url_template_needs_an_endpoint() -> None:
    with pytest.raises(CommandError, match="--trace-url-template needs --otlp-endpoint"):
        call_command(Command(), trace_url_template="http://apm/{trace_id}")


def test_removing_the_database_removes_its_wal_shm_and_journal(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    files = [db, *(tmp_path / f"demo.sqlite3{suffix}" for suffix in ("-wal", "-shm", "-journal"))]
    for path in files[1:]:
        path.write_bytes(b"")
    other = tmp_path / "other.sqlite3-wal"
    other.write_bytes(b"")
    assert remove_sqlite_database(str(db)) == files
    assert os.listdir(tmp_path) == [other.name]
    assert remove_sqlite_database(str(db)) == []


def test_a_file_that_is_not_sqlite_is_not_removed(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("not a database")
    with pytest.raises(CommandError, match="is not an SQLite database"):
        remove_sqlite_database(str(precious))
    assert precious.read_text() == "not a database"
