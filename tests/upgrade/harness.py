"""The machinery of the upgrade test: a throwaway django-ml-audit 0.2.0 virtualenv, the two
scripts that build and inspect databases, PostgreSQL scratch databases, and the comparisons.

* :func:`ensure_old_venv`: a virtualenv with ``django-ml-audit==0.2.0`` (from PyPI), cached in
  ``$ML_AUDIT_020_VENV`` or ``<tmp>/ml-audit-020-venv`` and rebuilt when it does not pass
  :func:`probe_old_venv`. A failed ``pip install`` is returned as an :class:`OldVenv` whose
  :meth:`~OldVenv.require` fails the test with pip's output (never a skip).
* :func:`build_old_database` runs ``build_old_db.py`` with that virtualenv's interpreter,
  isolated (``-I``: no ``PYTHONPATH``, no user site, not the script's directory; the working
  directory is a temporary one), so that it sees 0.2.0 and never this source tree.
* :func:`inspect_database` runs ``inspect_new_db.py`` with this project's interpreter.
* :func:`schema_differences` and :func:`upgrade_problems` compare what they return.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OLD_SCRIPT = HERE / "build_old_db.py"
NEW_SCRIPT = HERE / "inspect_new_db.py"

OLD_REQUIREMENTS = (
    "django-ml-audit==0.2.0",
    "Django>=5.1,<5.3",
    "djangorestframework>=3.15",
    "psycopg[binary]>=3.1",
)
PIP_TIMEOUT = 600
SCRIPT_TIMEOUT = 180
W3C_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")

# Variables that would let a child interpreter see this tree or this project's settings.
_LEAKY_ENVIRONMENT = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "VIRTUAL_ENV",
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
)


def child_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENVIRONMENT}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(
    command: Sequence[str | Path], *, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (stdout and stderr captured); a timeout fails the test with its output."""
    try:
        return subprocess.run(
            [str(part) for part in command],
            cwd=cwd,
            env=child_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = "\n".join(
            part.decode("utf-8", "replace") if isinstance(part, bytes) else part
            for part in (exc.stdout, exc.stderr)
            if part
        )
        pytest.fail(f"{' '.join(map(str, command))} timed out after {timeout} s:\n{output}")


# ------------------------------------------------------------------------------ old virtualenv


@dataclasses.dataclass(frozen=True)
class OldVenv:
    """The 0.2.0 virtualenv's interpreter, or why there is none."""

    python: Path | None
    log: str

    def require(self) -> Path:
        if self.python is None:
            pytest.fail(
                f"no django-ml-audit 0.2.0 virtualenv to build the old database with:\n{self.log}",
                pytrace=False,
            )
        return self.python


def old_venv_path() -> Path:
    configured = os.environ.get("ML_AUDIT_020_VENV")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "ml-audit-020-venv"


_PROBE = """
import json, sys, sysconfig
from importlib.metadata import version
from pathlib import Path
import django, psycopg, rest_framework, ml_audit
print(json.dumps({
    "ml_audit_file": str(Path(ml_audit.__file__).resolve()),
    "site_packages": str(Path(sysconfig.get_paths()["purelib"]).resolve()),
    "ml_audit_version": version("django-ml-audit"),
    "django_version": django.get_version(),
    "sys_path": sys.path,
}))
"""


def probe_old_venv(python: Path, cwd: Path) -> str:
    """Why ``python`` is not a usable, isolated 0.2.0 interpreter ("" when it is)."""
    if not python.exists():
        return f"{python} does not exist"
    done = run([python, "-I", "-c", _PROBE], cwd=cwd, timeout=60)
    if done.returncode != 0:
        return f"probe failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    facts = json.loads(done.stdout)
    site = Path(facts["site_packages"])
    if facts["ml_audit_version"] != "0.2.0":
        return f"django-ml-audit {facts['ml_audit_version']} installed, not 0.2.0"
    if not Path(facts["ml_audit_file"]).is_relative_to(site):
        return f"ml_audit imported from {facts['ml_audit_file']}, not from {site}"
    if not facts["django_version"].startswith(("5.1", "5.2")):
        return f"Django {facts['django_version']}, not 5.1 or 5.2"
    leaks = [p for p in facts["sys_path"] if p and Path(p).resolve().is_relative_to(ROOT)]
    if leaks:
        return f"the 0.2.0 interpreter sees this source tree on sys.path: {leaks}"
    return ""


def ensure_old_venv(venv: Path, scratch: Path) -> OldVenv:
    """The cached 0.2.0 virtualenv at ``venv``, (re)built unless it already passes the probe."""
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:  # one builder at a time (pytest-xdist, parallel runs)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not probe_old_venv(python, scratch):
            return OldVenv(python, f"reused {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        log = [f"building {venv}"]
        steps: list[list[str | Path]] = [
            [sys.executable, "-m", "venv", venv],
            [
                python,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                *OLD_REQUIREMENTS,
            ],
        ]
        for step in steps:
            done = run(step, cwd=scratch, timeout=PIP_TIMEOUT)
            log.append(f"$ {' '.join(map(str, step))}\n{done.stdout}\n{done.stderr}")
            if done.returncode != 0:
                log.append(f"exit status {done.returncode}")
                return OldVenv(None, "\n".join(log))
        problem = probe_old_venv(python, scratch)
        if problem:
            return OldVenv(None, "\n".join([*log, problem]))
        return OldVenv(python, "\n".join(log))


# ------------------------------------------------------------------------------ the scripts


def _run_json_script(
    command: Sequence[str | Path], output: Path, cwd: Path, what: str
) -> dict[str, Any]:
    output.unlink(missing_ok=True)
    done = run([*command, "--output", output], cwd=cwd, timeout=SCRIPT_TIMEOUT)
    if not output.exists():
        pytest.fail(
            f"{what} wrote no output (exit {done.returncode}):\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    result: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
    result["_exit_status"] = done.returncode
    result["_stderr"] = done.stderr
    return result


def build_old_database(python: Path, database: str, workdir: Path) -> dict[str, Any]:
    """Run ``build_old_db.py`` with 0.2.0's interpreter, isolated; its manifest."""
    cwd = workdir / "old-cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    manifest = _run_json_script(
        [python, "-I", OLD_SCRIPT, "--database", database, "--workdir", workdir / "old-project"],
        workdir / "old-manifest.json",
        cwd,
        "build_old_db.py (django-ml-audit 0.2.0)",
    )
    if manifest["error"]:
        pytest.fail(
            f"building the 0.2.0 database failed at stage {manifest['stage']!r}:\n"
            f"{manifest['error']}",
            pytrace=False,
        )
    return manifest


def inspect_database(
    database: str, workdir: Path, name: str, *, seed: bool = False
) -> dict[str, Any]:
    """Run ``inspect_new_db.py`` with this project's interpreter on ``database``."""
    cwd = workdir / f"{name}-cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    command: list[str | Path] = [
        sys.executable,
        "-P",
        NEW_SCRIPT,
        "--database",
        database,
        "--workdir",
        workdir / f"{name}-project",
        "--source-root",
        ROOT,
    ]
    if seed:
        command.append("--seed")
    return _run_json_script(command, workdir / f"{name}.json", cwd, f"inspect_new_db.py ({name})")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


# ------------------------------------------------------------------------------ PostgreSQL


@contextlib.contextmanager
def postgres_databases(url: str, *suffixes: str) -> Iterator[list[str]]:
    """Fresh databases ``<name><suffix>`` on the server of ``url`` (dropped first if left over
    by an earlier run, and dropped at the end); yields their URLs."""
    import psycopg

    from tests.settings import database_from_url

    settings = database_from_url(url)
    names = [settings["NAME"] + suffix for suffix in suffixes]
    parsed = urlparse(url)
    urls = [parsed._replace(scheme="postgres", path=f"/{name}").geturl() for name in names]

    def admin() -> psycopg.Connection[Any]:
        return psycopg.connect(
            dbname="postgres",
            user=settings["USER"] or None,
            password=settings["PASSWORD"] or None,
            host=settings["HOST"] or None,
            port=settings["PORT"] or None,
            autocommit=True,
        )

    def drop_all(connection: psycopg.Connection[Any]) -> None:
        for name in names:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    with admin() as connection:
        drop_all(connection)
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urls
    finally:
        with admin() as connection:
            drop_all(connection)


# ------------------------------------------------------------------------------ comparisons


def differences(left: Any, right: Any, path: str = "") -> list[str]:
    """Readable differences between two JSON values (dicts by key, lists item by item)."""
    if isinstance(left, dict) and isinstance(right, dict):
        found: list[str] = []
        for key in sorted(set(left) | set(right), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in right:
                found.append(f"{where}: only in the upgraded database: {left[key]!r}")
            elif key not in left:
                found.append(f"{where}: only in the fresh database: {right[key]!r}")
            else:
                found.extend(differences(left[key], right[key], where))
        return found
    if isinstance(left, list) and isinstance(right, list) and left != right:
        only_left = [item for item in left if item not in right]
        only_right = [item for item in right if item not in left]
        if not only_left and not only_right:
            return [f"{path}: same items, other multiplicity: {left!r} vs {right!r}"]
        return [
            *(f"{path}: only in the upgraded database: {item!r}" for item in only_left),
            *(f"{path}: only in the fresh database: {item!r}" for item in only_right),
        ]
    if left != right:
        return [f"{path}: upgraded {left!r} != fresh {right!r}"]
    return []


def schema_differences(upgraded: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    return differences(upgraded["schema"], fresh["schema"])


def script_failure(result: dict[str, Any], what: str) -> str:
    """ "" when the script got through every stage, else where and why it stopped."""
    if not result.get("error"):
        return ""
    return f"{what}: stopped at stage {result['stage']!r}:\n{result['error']}"


_MISSING = object()


def _when(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, where: str, field: str, actual: Any, expected: Any) -> None:
        if actual is _MISSING:
            self.items.append(f"{where}: {field} is missing (expected {expected!r})")
        elif actual != expected:
            self.items.append(f"{where}: {field} = {actual!r}, expected {expected!r}")

    def check_time(self, where: str, field: str, actual: Any, expected: Any) -> None:
        if actual is _MISSING:
            self.items.append(f"{where}: {field} is missing (expected {expected!r})")
            return
        try:
            same = _when(actual) == _when(expected)
        except ValueError:
            same = False
        if not same:
            self.items.append(f"{where}: {field} = {actual!r}, expected the instant {expected!r}")

    def add(self, message: str) -> None:
        self.items.append(message)


def _model_name(row: dict[str, Any]) -> Any:
    """The model name of an API or ORM dict: ``model_name`` (ours now), else ``name`` (ours
    before the rename)."""
    return row.get("model_name", row.get("name", _MISSING))


def split_old_trace_id(value: str) -> tuple[str, str]:
    """Where 0.2.0's ``trace_id`` belongs now: ``(trace_id, correlation_id)``."""
    if W3C_TRACE_ID.match(value) and value != "0" * 32:
        return value, ""
    return "", value


def check_manifest(manifest: dict[str, Any]) -> list[str]:
    """That 0.2.0 did what the test relies on (so a failure below is about the upgrade)."""
    problems = []
    facts = manifest["interpreter"]
    if not facts["ml_audit_in_site_packages"] or facts["ml_audit_version"] != "0.2.0":
        problems.append(f"not 0.2.0 from the throwaway virtualenv: {facts}")
    if manifest["applied_migrations"] != ["0001_initial"]:
        problems.append(f"0.2.0 applied {manifest['applied_migrations']}, not ['0001_initial']")
    tables = manifest["tables"]
    predictions = {row["id"]: row for row in tables["ml_audit_predictionevent"]}
    named = manifest["named"]
    if predictions[named["x_request_id"]]["features"].get("email") != "*****":
        problems.append("0.2.0 did not redact the email feature")
    twice = named["explained_twice"]
    (held,) = [
        r for r in tables["ml_audit_explanation"] if r["prediction_id"] == twice["prediction"]
    ]
    if {key: held[key] for key in twice["last"]} != twice["last"]:
        problems.append(f"0.2.0 did not update the explanation in place: {held}")
    return problems


#: Where our migrations keep what 0.2.0 stored and our schema has no column for or refuses
#: (README, "Upgrading from 0.2.0").
UPGRADE_KEY = "ml_audit_0_2_0"
MASK = "*****"  # 0.2.0's default mask value
STATUSES = ("success", "failed", "partial")


def _upgrade_notes(old: dict[str, Any]) -> dict[str, Any]:
    """``metadata["ml_audit_0_2_0"]`` of a migrated prediction: 0.2.0's ``created_at`` and
    ``updated_at``, a caller-supplied ``input_fingerprint``, and the values our constraints
    refuse (a confidence outside [0, 1], a negative latency, an unknown status, metadata that is
    not an object)."""
    notes: dict[str, Any] = {"created_at": old["created_at"], "updated_at": old["updated_at"]}
    if old["input_fingerprint"]:
        notes["input_fingerprint"] = old["input_fingerprint"]
    if old["confidence"] is not None and not 0 <= old["confidence"] <= 1:
        notes["confidence"] = old["confidence"]
    if old["latency_ms"] is not None and old["latency_ms"] < 0:
        notes["latency_ms"] = old["latency_ms"]
    if old["status"] not in STATUSES:
        notes["status"] = old["status"]
    if old["metadata"] is not None and not isinstance(old["metadata"], dict):
        notes["metadata"] = old["metadata"]
    return notes


def _expected_prediction(old: dict[str, Any], actor: dict[str, Any] | None) -> dict[str, Any]:
    """What our API shows of a 0.2.0 prediction (``actor``: the 0.2.0 row it pointed at)."""
    trace_id, correlation_id = split_old_trace_id(old["trace_id"])
    notes = _upgrade_notes(old)
    return {
        "prediction_id": old["prediction_id"],
        "environment": old["environment"],
        "features": old["features"],
        "output": old["output"],
        "confidence": None if "confidence" in notes else old["confidence"],
        "decision_outcome": old["decision_outcome"],
        "status": "failed" if "status" in notes else old["status"],
        "latency_ms": None if "latency_ms" in notes else old["latency_ms"],
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "span_id": "",
        "error_type": "",
        "error_message": "",
        "actor": None
        if actor is None
        else {"type": actor["actor_type"], "id": actor["actor_id"], "tenant": actor["tenant_id"]},
        "tenant_id": actor["tenant_id"] if actor else "",
        # 0.2.0 kept the request context on the actor row (from its first request).
        "client_ip": actor["ip_address"] if actor else None,
        "user_agent": actor["user_agent"] if actor else "",
        "auth_context": (actor["auth_context"] or {}) if actor else {},
    }


def _check_metadata(problems: _Problems, where: str, shown: Any, old: dict[str, Any]) -> None:
    if not isinstance(shown, dict):
        problems.add(f"{where}: metadata = {shown!r}, expected an object")
        return
    kept = {key: value for key, value in shown.items() if key != UPGRADE_KEY}
    expected_kept = old["metadata"] if isinstance(old["metadata"], dict) else {}
    problems.check(where, "metadata (0.2.0's keys)", kept, expected_kept)
    notes = shown.get(UPGRADE_KEY, _MISSING)
    expected = _upgrade_notes(old)
    if not isinstance(notes, dict):
        problems.check(where, f"metadata[{UPGRADE_KEY!r}]", notes, expected)
        return
    for field in ("created_at", "updated_at"):
        problems.check_time(
            where, f"metadata[{UPGRADE_KEY!r}][{field!r}]", notes.get(field, _MISSING), old[field]
        )
    problems.check(
        where,
        f"metadata[{UPGRADE_KEY!r}] (but the times)",
        {k: v for k, v in notes.items() if k not in ("created_at", "updated_at")},
        {k: v for k, v in expected.items() if k not in ("created_at", "updated_at")},
    )


def _check_prediction_item(
    problems: _Problems,
    where: str,
    item: dict[str, Any],
    old: dict[str, Any],
    tables: dict[str, dict[str, dict[str, Any]]],
    verify: dict[str, Any],
) -> None:
    actor = tables["actors"].get(old["actor_id"]) if old["actor_id"] else None
    for field, expected in _expected_prediction(old, actor).items():
        problems.check(where, field, item.get(field, _MISSING), expected)
    problems.check_time(where, "timestamp", item.get("timestamp", _MISSING), old["timestamp"])
    _check_metadata(problems, where, item.get("metadata", _MISSING), old)
    model = tables["models"][old["model_id"]]
    shown = item.get("model") or {}
    problems.check(where, "model name", _model_name(shown), model["model_name"])
    problems.check(where, "model version", shown.get("version", _MISSING), model["version"])
    problems.check(where, "model framework", shown.get("framework", _MISSING), model["framework"])
    if not SHA256_HEX.match(str(item.get("content_hash", ""))):
        problems.add(f"{where}: content_hash {item.get('content_hash')!r} is not a SHA-256")
    # Ours: the SHA-256 of the redacted features (0.2.0's own value is kept in the metadata).
    problems.check(
        where,
        "input_fingerprint",
        item.get("input_fingerprint", _MISSING),
        verify.get("computed_input_fingerprint", "<not computed: see verify_failures>"),
    )
    masked = sorted(key for key, value in (old["features"] or {}).items() if value == MASK)
    redaction = item.get("redaction")
    paths = redaction.get("paths", {}) if isinstance(redaction, dict) else {}
    problems.check(
        where, "features named in redaction.paths", sorted(paths.get("features", [])), masked
    )
    explanation = tables["explanations"].get(old["id"])
    if explanation is None:
        problems.check(where, "explanation", item.get("explanation", _MISSING), None)
        problems.check(where, "explanation_revisions", item.get("explanation_revisions"), 0)
        return
    problems.check(where, "explanation_revisions", item.get("explanation_revisions"), 1)
    shown_explanation = item.get("explanation") or {}
    for field in ("method", "method_version", "payload", "summary_text", "status"):
        problems.check(
            where,
            f"explanation {field}",
            shown_explanation.get(field, _MISSING),
            explanation[field],
        )
    problems.check(where, "explanation revision", shown_explanation.get("revision", _MISSING), 1)
    problems.check_time(
        where,
        "explanation generated_at",
        shown_explanation.get("generated_at", _MISSING),
        explanation["generated_at"],
    )


def surviving_actors(actors: list[dict[str, Any]]) -> dict[str, str]:
    """Each 0.2.0 actor id -> the id of the row that holds its identity after the upgrade.

    0.2.0 had no unique constraint on actors: rows sharing one identity are merged into the
    oldest (``created_at``, then id), the others' predictions re-pointed at it.
    """
    keepers: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in sorted(actors, key=lambda r: (_when(r["created_at"]), r["id"].replace("-", ""))):
        keepers.setdefault((row["actor_type"], row["actor_id"], row["tenant_id"]), row)
    return {
        row["id"]: keepers[(row["actor_type"], row["actor_id"], row["tenant_id"])]["id"]
        for row in actors
    }


def upgrade_problems(manifest: dict[str, Any], upgraded: dict[str, Any]) -> list[str]:
    """Every way the upgraded database, read through our ORM and API, differs from what 0.2.0
    stored (as its manifest says)."""
    old = manifest["tables"]
    tables = {
        "models": {row["id"]: row for row in old["ml_audit_modelversion"]},
        "actors": {row["id"]: row for row in old["ml_audit_requestingactor"]},
        "predictions": {row["id"]: row for row in old["ml_audit_predictionevent"]},
        "explanations": {row["prediction_id"]: row for row in old["ml_audit_explanation"]},
    }
    problems = _Problems()
    orm = upgraded["orm"]
    api = upgraded["api"]

    for error in api["errors"]:
        problems.add(f"API {error['url']} -> {error['status']}: {error['body'][:500]}")
    problems.items.extend(orm["verify_failures"])
    if api["prediction_pages"] < 2:
        problems.add(f"predictions/ was read in {api['prediction_pages']} page(s): no paging")

    # Model versions: same UUIDs and values, through the ORM and through models/.
    new_models = {row["id"]: row for row in orm["ml_audit_modelversion"]}
    problems.check("model versions", "ids", sorted(new_models), sorted(tables["models"]))
    listed_models = {str(row["id"]): row for row in api["models"]}
    problems.check("API models/", "ids", sorted(listed_models), sorted(tables["models"]))
    for model_id, before in tables["models"].items():
        expected_snapshot = before["config_snapshot"] if before["config_snapshot"] else {}
        for source, rows in (("ORM", new_models), ("API models/", listed_models)):
            row = rows.get(model_id)
            if row is None:
                continue
            where = f"{source} model version {model_id} ({before['model_name']})"
            problems.check(where, "model_name", _model_name(row), before["model_name"])
            for field in ("version", "framework", "build_id", "commit_hash"):
                problems.check(where, field, row.get(field, _MISSING), before[field])
            problems.check(
                where, "config_snapshot", row.get("config_snapshot", _MISSING), expected_snapshot
            )
            for field in ("created_at", "updated_at"):
                problems.check_time(where, field, row.get(field, _MISSING), before[field])
            if source == "ORM":
                problems.check(
                    where, "is_active", row.get("is_active", _MISSING), before["is_active"]
                )

    # Actors: same UUIDs and identities (their request context moved to the predictions);
    # an identity 0.2.0 stored twice is one row now, the oldest.
    keeper = surviving_actors(old["ml_audit_requestingactor"])
    new_actors = {row["id"]: row for row in orm["ml_audit_requestingactor"]}
    problems.check("actors", "ids", sorted(new_actors), sorted(set(keeper.values())))
    for actor_id, before in tables["actors"].items():
        row = new_actors.get(actor_id)
        if row is None:
            continue
        where = f"actor {actor_id} ({before['actor_type']}:{before['actor_id']})"
        for field in ("actor_type", "actor_id", "tenant_id"):
            problems.check(where, field, row.get(field, _MISSING), before[field])
        problems.check_time(
            where, "created_at", row.get("created_at", _MISSING), before["created_at"]
        )
    actor_of = {event_id: row.get("actor_id") for event_id, row in orm["predictions"].items()}
    for prediction_id, before in tables["predictions"].items():
        expected_actor = keeper[before["actor_id"]] if before["actor_id"] else None
        problems.check(
            f"prediction {prediction_id} ({before['prediction_id']})",
            "actor_id (ORM)",
            actor_of.get(prediction_id, _MISSING),
            expected_actor,
        )

    # Explanations: same UUIDs, each revision 1 of its prediction.
    new_explanations = {row["id"]: row for row in orm["ml_audit_explanation"]}
    old_explanations = {row["id"]: row for row in old["ml_audit_explanation"]}
    problems.check("explanations", "ids", sorted(new_explanations), sorted(old_explanations))
    for explanation_id, before in old_explanations.items():
        row = new_explanations.get(explanation_id)
        if row is None:
            continue
        where = f"explanation {explanation_id}"
        problems.check(where, "prediction_id", row.get("prediction_id"), before["prediction_id"])
        problems.check(where, "revision", row.get("revision"), 1)
        for field in ("created_at", "generated_at"):
            problems.check_time(where, field, row.get(field, _MISSING), before[field])

    # Predictions: same UUIDs, every field, in the list and in the detail.
    problems.check("predictions", "ids", sorted(orm["predictions"]), sorted(tables["predictions"]))
    listed = {str(item["id"]): item for item in api["predictions"]}
    problems.check(
        "API predictions/", "number of rows", len(api["predictions"]), len(tables["predictions"])
    )
    problems.check("API predictions/", "ids", sorted(listed), sorted(tables["predictions"]))
    verify = orm["predictions"]
    for prediction_id, before in tables["predictions"].items():
        label = f"prediction {prediction_id} ({before['prediction_id']})"
        for source, item in (
            ("API predictions/", listed.get(prediction_id)),
            ("API predictions/<id>/", api["detail"].get(prediction_id)),
        ):
            if item is None:
                problems.add(f"{source}: {label} is not readable")
                continue
            where = f"{source} {label}"
            problems.check(where, "id", str(item.get("id")), prediction_id)
            _check_prediction_item(
                problems, where, item, before, tables, verify.get(prediction_id, {})
            )
        trace_id, _ = split_old_trace_id(before["trace_id"])
        if trace_id and prediction_id not in (api["traces"].get(trace_id) or []):
            problems.add(f"API traces/{trace_id}/: {label} is not in its trace")

    # The append-only guard covers the migrated rows.
    for attempt, outcome in upgraded["append_only"].items():
        if not outcome.get("refused"):
            problems.add(f"append-only: {attempt} was not refused: {outcome}")
    return problems.items


def describe(problems: list[str], limit: int = 80) -> str:
    shown = problems[:limit]
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n".join(f"- {problem}" for problem in shown) + more
