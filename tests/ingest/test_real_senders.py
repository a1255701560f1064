"""Real senders written by others, in processes of their own, against a real HTTP server.

The server is gunicorn (``tests/ingest/server.py``) in a process of its own, on a free port of
127.0.0.1, writing to the test database on PostgreSQL (the tests commit, so both processes see
the rows) and to a migrated SQLite file otherwise (the test database is in memory there).
The senders are separate processes again, and import neither Django nor ml_audit:

- ``senders/python_sender.py``: the OpenTelemetry Python SDK's ``BatchSpanProcessor`` and
  ``OTLPSpanExporter`` (``opentelemetry-exporter-otlp-proto-http``, gzip);
- ``senders/node_sender.mjs``: the OpenTelemetry JS SDK (``@opentelemetry/sdk-trace-node``)
  and ``@opentelemetry/exporter-trace-otlp-proto``, installed from the npm registry into a
  cache directory (``$ML_AUDIT_NODE_CACHE``, default ``~/.cache/ml_audit/node-sender``) by the
  fixture. Skipped only when ``node`` is not installed.

Both forget to redact and wrap each prediction in a span of their own HTTP handling: the
rows must be redacted here, belong to the service of the token, keep the senders' trace and
span ids, and the other spans must be ignored and counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.utils import load_backend

from ml_audit import store
from ml_audit.ingest.auth import issue
from ml_audit.models import Explanation, PredictionEvent
from tests.conftest import is_postgres
from tests.ingest.otlp import RAW_CARD, RAW_EMAIL
from tests.ingest.server import database_url, gunicorn, migrate

SENDERS = Path(__file__).resolve().parent / "senders"
COUNT = 12


# Committed rows: the server process must see the credentials, the test the server's rows.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server_db(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(alias the test reads, URL the server writes to) of the server's database."""
    if is_postgres():
        yield "default", database_url(connections["default"].settings_dict)
        return
    path = tmp_path / "ingest-server.sqlite3"
    url = f"sqlite://{path}"
    migrate(url)
    # A connection of the test's own to that file, not in settings.DATABASES (Django's test
    # case allows such dynamically created connections).
    alias = "ingest_server"
    settings_dict = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}}
    )["default"]
    connections[alias] = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)
    try:
        yield alias, url
    finally:
        connections[alias].close()
        del connections[alias]


@pytest.fixture
def ingest_server(server_db: tuple[str, str], tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(alias, endpoint URL, server log) of a gunicorn serving the endpoint."""
    alias, url = server_db
    log = tmp_path / "gunicorn.log"
    with gunicorn(url, log) as endpoint:
        yield alias, endpoint, log


_SUMMARY = re.compile(
    r"ingest from (\S+): (\d+) stored, (\d+) duplicates, (\d+) rejected, (\d+) ignored"
)


def _server_counts(log: Path, service: str) -> dict[str, int]:
    """What the server logged of the service's requests, summed."""
    counts = dict.fromkeys(("stored", "duplicates", "rejected", "ignored"), 0)
    for match in _SUMMARY.finditer(log.read_text(errors="replace")):
        if match[1] == service:
            for name, value in zip(counts, match.groups()[1:], strict=True):
                counts[name] += int(value)
    return counts


def _sender_environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def _run(command: list[str], *, cwd: Path | None = None) -> dict[str, Any]:
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=180,
        env=_sender_environment(),
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return output


def _assert_rows(
    alias: str, sent: list[dict[str, str]], *, service: str, tenant: str, model: str
) -> None:
    rows = {
        row.prediction_id: row
        for row in PredictionEvent.objects.using(alias)
        .select_related("actor", "model")
        .filter(prediction_id__in=[s["prediction_id"] for s in sent])
    }
    assert len(rows) == len(sent) == COUNT
    for item in sent:
        row = rows[item["prediction_id"]]
        assert (row.trace_id, row.span_id, row.parent_span_id) == (
            item["trace_id"],
            item["span_id"],
            item["parent_span_id"],
        )
        assert row.actor is not None
        assert (row.actor.actor_type, row.actor.actor_id, row.tenant_id) == (
            "service",
            service,
            tenant,
        )
        assert row.model.model_name == model
        text = json.dumps([row.features, row.auth_context])
        assert RAW_EMAIL not in text
        assert RAW_CARD not in text
        assert row.redaction["paths"]["features"]
        assert store.verify_event(row)


def test_the_python_sdk_exporter_from_another_process(
    ingest_server: tuple[str, str, Path],
) -> None:
    alias, ingest_url, log = ingest_server
    token = issue("py-scorer", ["acme"], using=alias)[1]

    output = _run(
        [
            sys.executable,
            str(SENDERS / "python_sender.py"),
            "--endpoint",
            ingest_url,
            "--token",
            token,
            "--run",
            "py",
            "--count",
            str(COUNT),
        ]
    )

    assert output["flushed"] is True
    assert output["results"]
    assert set(output["results"]) == {"SUCCESS"}
    _assert_rows(alias, output["sent"], service="py-scorer", tenant="acme", model="fraud")
    explanation = Explanation.objects.using(alias).get(prediction__prediction_id="py-0")
    assert explanation.payload == {"amount": 0.4}
    assert RAW_EMAIL not in explanation.summary_text
    assert store.verify_explanation(explanation)
    # The senders' own "POST /score" spans were ignored and counted, nothing was refused.
    assert _server_counts(log, "py-scorer") == {
        "stored": COUNT + 1,
        "duplicates": 0,
        "rejected": 0,
        "ignored": COUNT,
    }


@pytest.fixture(scope="session")
def node_sender() -> Path:
    """A directory with the Node sender and its packages from the npm registry (cached)."""
    node = shutil.which("node")
    if node is None:
        # CI installs Node.js and sets ML_AUDIT_REQUIRE_NODE: there, a missing node fails.
        assert not os.environ.get("ML_AUDIT_REQUIRE_NODE"), "node is required but not installed"
        pytest.skip("node is not installed: the Node.js sender cannot run")
    npm = shutil.which("npm")
    assert npm is not None, "node is installed but npm is not"
    manifest = (SENDERS / "package.json").read_bytes()
    digest = hashlib.sha256(manifest).hexdigest()[:16]
    base = Path(
        os.environ.get("ML_AUDIT_NODE_CACHE") or Path.home() / ".cache" / "ml_audit" / "node-sender"
    )
    directory = base / digest
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(SENDERS / "node_sender.mjs", directory / "node_sender.mjs")
    marker = directory / "node_modules" / ".ml_audit-installed"
    if not marker.exists():
        (directory / "package.json").write_bytes(manifest)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            check=True,
            timeout=600,
            capture_output=True,
        )
        marker.write_text(digest)
    return directory


def test_the_node_sdk_proto_exporter_from_another_process(
    ingest_server: tuple[str, str, Path], node_sender: Path
) -> None:
    alias, ingest_url, log = ingest_server
    token = issue("node-scorer", ["globex"], using=alias)[1]
    node = shutil.which("node")
    assert node is not None

    output = _run([node, "node_sender.mjs", ingest_url, token, "node", str(COUNT)], cwd=node_sender)

    assert output["results"]
    assert set(output["results"]) == {"SUCCESS"}
    _assert_rows(alias, output["sent"], service="node-scorer", tenant="globex", model="churn")
    assert _server_counts(log, "node-scorer") == {
        "stored": COUNT,
        "duplicates": 0,
        "rejected": 0,
        "ignored": COUNT,
    }
