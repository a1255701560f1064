"""Latency of the read-only REST API over a large audit trail (issues #4 and #14).

Loads ``--rows`` predictions (default 1,000,000) straight into a freshly migrated database with
PostgreSQL ``COPY`` (not through ``record_prediction_event``: this is a read benchmark, so the
content hashes and input fingerprints are placeholders), attaches an explanation to every tenth
(with reason codes), and the human side of the decisions (issue #14): 30% of the predictions
name a data subject (one of 50,000: about six predictions each), 5% have one or two reviews
(confirm, override, escalate, contest_received; overrides on about 1.5% of all predictions),
20% an observed outcome (a tenth of those two). Then it runs ``ANALYZE`` and times requests
through Django's test client as a logged-in user holding ``ml_audit.view_predictionevent``
(session authentication, so each request also pays the session, user and permission look-ups a
real deployment pays):

* ``floor``     ``GET predictions/?page_size=1`` (cursor mode only): the fixed cost of a request
  (test client, middleware, session and permission look-ups, DRF, access log), the baseline the
  other cases are read against: what they add above it is per-row fetching and serialising
* ``list``      ``GET predictions/`` (first page, 100 rows)
* ``deep``      the page ``--deep-page`` pages down (default 10,000, i.e. rows 999,900-999,999).
  Cursor mode: the cursor is built directly instead of following 10,000 ``next`` links. DRF's
  ``CursorPagination`` positions a cursor on the *first* ordering field only (``timestamp``;
  ``id`` only orders ties, which the cursor's offset ``o`` skips), so the cursor is
  ``base64("p=<str(timestamp of the last row of the page before>)")``, exactly what
  ``encode_cursor`` writes for that row. The first row returned is checked against the expected
  one. Page-number mode: ``?page=N``.
* ``filtered``  ``model_name`` + a 7-day ``time_from``/``time_to`` window + ``min_confidence=0.8``
* ``detail``    ``GET predictions/{uuid}/`` (a different prediction each request)
* ``detail+``   the same, for predictions that have an explanation with reason codes, reviews
  (an override among them) and outcomes: the detail's related query at its fullest
* ``subject``   ``subject=`` one subject's reference (its handful of predictions)
* ``override``  ``has_override=true`` (about 1.5% of the rows qualify)
* ``action``    ``review_action=escalate`` (about 0.5%)
* ``outcome``   ``has_outcome=true`` (20%)
* ``no-outcome`` ``has_outcome=false`` with the ``filtered`` case's filters (80%)

each in cursor pagination (the default) and page-number pagination (``API_PAGINATION="page"``,
which adds a count query: on this unfiltered table the planner's estimate, see
``ml_audit.api.pagination``; ``deep`` is an ``OFFSET`` of 999,900 rows), with the access log on
(the default: one ``INSERT`` per request, committed before the response), and in cursor mode
once more with the access log off. Medians and p90 in ms, ``+floor`` (the median minus the
floor's: what a case costs beyond a request's fixed cost); the number of SQL queries each
request runs (auth = session, user and permissions; data; log = the access log's ``INSERT``)
and their time, measured around each query. Targets: list, deep and filtered <= 15 ms median,
detail <= 5 ms; the issue #14 filters are held to the ``filtered`` target (15 ms) and
``detail+`` to the detail's (5 ms). Every list and detail now also reads its explanations,
reason codes, reviews and outcomes (one ``UNION ALL`` query): their cost is in every case.
On a shared machine compare ``+floor`` (what a case adds to a request's fixed cost) rather than
absolute times.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ml_audit_dev \\
        python benchmarks/bench_read_api.py [--rows 20000] [--json] [--explain] \\
        [--repeat 3] [--reuse]

``--repeat N`` measures every case N times, in turn, and reports the median of the runs' medians
with their spread: on a shared machine one busy moment then does not decide a figure.

PostgreSQL only (``COPY``); the database used is DATABASE_URL's name + ``_bench``, dropped and
re-created, unless ``--reuse`` finds it loaded by an earlier run with the same ``--rows`` (the row
counts are checked against the tables; the load's own description is kept in a table of the
benchmark database). Reusing skips the load only: migrations are applied, every case is measured
as usual. The access log then also holds the rows of earlier runs.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import functools
import hashlib
import json
import os
import random
import re
import statistics
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlencode

import django
from _django import ROOT, _database_exists, _recreate_postgres_database
from django.conf import settings

API = "/api/ml-audit/predictions/"
PAGE_SIZE = 100
MODELS = 10
ACTORS = 1000
TENANTS = ("acme", "globex", "initech", "umbrella")
SPAN = dt.timedelta(days=90)
AUTH_TABLES = re.compile(r'(FROM|JOIN) "(django_session|auth_\w+)"')
TARGETS_MS: dict[str, float | None] = {
    "floor": None,
    "list": 15.0,
    "deep": 15.0,
    "filtered": 15.0,
    "detail": 5.0,
    "detail+": 5.0,
    "subject": 15.0,
    "override": 15.0,
    "action": 15.0,
    "outcome": 15.0,
    "no-outcome": 15.0,
}
#: Issue #14's share of the rows (see the module docstring).
SUBJECTS = 50_000
SUBJECT_SHARE = 0.30
REVIEW_SHARE = 0.05
OUTCOME_SHARE = 0.20
#: Review actions of a reviewed prediction's last review, by weight (before it: a confirm).
REVIEW_ACTIONS = (
    ("confirm", 0.55),
    ("override", 0.30),
    ("escalate", 0.10),
    ("contest_received", 0.05),
)
#: Bump when load() writes different data: --reuse then loads again.
DATA_VERSION = 2


def setup(
    reuse: bool = False,
    *,
    label: str = "bench_read_api",
    apps: Sequence[str] = ("rest_framework", "django_filters"),
    middleware: Sequence[str] = (),
    routes: Callable[[], list[Any]] | None = None,
    **extra: Any,
) -> None:
    """Configure Django for the API (sessions, DRF, django-filter), migrate a fresh database
    (or, with ``reuse``, the existing one: see :func:`reusable`).

    ``bench_admin.py`` configures the admin with the same database handling: ``apps`` and
    ``middleware`` come on top of contenttypes, auth, sessions and their middleware,
    ``routes()`` gives the URL patterns (after ``django.setup()``), ``extra`` more settings.
    """
    sys.path.insert(0, str(ROOT))
    from tests.settings import database_from_url

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(f"{label} needs PostgreSQL: set DATABASE_URL=postgres://...")
    database = database_from_url(url)
    database["NAME"] = database["NAME"] + "_bench"
    database["CONN_MAX_AGE"] = None  # one persistent connection, as a production worker keeps

    from django.urls import include, path

    urls = types.ModuleType(f"{label}_urls")
    sys.modules[urls.__name__] = urls
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        SECRET_KEY="benchmark",
        ALLOWED_HOSTS=["testserver"],
        DATABASES={"default": database},
        INSTALLED_APPS=[
            *(app for app in apps if app.startswith("django.contrib.")),
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            *(app for app in apps if not app.startswith("django.contrib.")),
            "ml_audit",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            *middleware,
        ],
        ROOT_URLCONF=urls.__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ML_AUDIT={"OTEL_ENABLED": False},
        **extra,
    )
    if not (reuse and _database_exists(database)):
        _recreate_postgres_database(database)
    django.setup()
    urls.urlpatterns = (  # type: ignore[attr-defined]
        routes() if routes else [path("api/ml-audit/", include("ml_audit.api.urls"))]
    )
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --reuse: what load() returned, kept in the benchmark database beside the data it describes.
META_TABLE = "bench_read_api_meta"


def save_meta(loaded: dict[str, Any]) -> None:
    from django.db import connection

    meta = {**loaded, "start": loaded["start"].isoformat()}
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {META_TABLE} (meta jsonb NOT NULL)")
        cursor.execute(f"INSERT INTO {META_TABLE} VALUES (%s)", [json.dumps(meta)])


def reusable(rows: int) -> dict[str, Any] | None:
    """What :func:`load` returned when it loaded this database with ``rows`` predictions, or
    ``None`` when the database holds anything else (then it is dropped and loaded again),
    an earlier version of the data included.

    The row counts are checked against the tables, not only against the saved description.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [META_TABLE])
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute(f"SELECT meta FROM {META_TABLE}")
        found = cursor.fetchone()
        if found is None:
            return None
        meta = found[0] if isinstance(found[0], dict) else json.loads(found[0])
        cursor.execute("SELECT count(*) FROM ml_audit_predictionevent")
        predictions = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM ml_audit_explanation")
        explanations = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM ml_audit_review")
        reviews = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM ml_audit_outcome")
        outcomes = cursor.fetchone()[0]
    if meta.get("rows") != rows or meta.get("data_version") != DATA_VERSION:
        return None
    counted = (predictions, explanations, reviews, outcomes)
    if counted != (rows, meta["explanations"], meta["reviews"], meta["outcomes"]):
        return None
    return {**meta, "start": dt.datetime.fromisoformat(meta["start"])}


def uuid7_at(when: dt.datetime, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 for ``when`` (ms precision), like the ids the library writes."""
    ms = int(when.timestamp() * 1000)
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
    return uuid.UUID(int=value | rng.getrandbits(62))


PREDICTION_COLUMNS = (
    "id, prediction_id, timestamp, trace_id, span_id, parent_span_id, correlation_id, "
    "environment, model_id, actor_id, tenant_id, client_ip, user_agent, auth_context, features, "
    "redaction, input_fingerprint, output, confidence, decision_outcome, status, error_type, "
    "error_message, latency_ms, metadata, content_hash, subject_ref"
)
EXPLANATION_COLUMNS = (
    "id, prediction_id, revision, method, method_version, payload, summary_text, status, "
    "generated_at, created_at, content_hash"
)
REVIEW_COLUMNS = (
    "id, prediction_id, tenant_id, action, final_outcome, reviewer_type, reviewer_id, reason, "
    "comment, redaction, created_at, trace_id, span_id"
)
OUTCOME_COLUMNS = (
    "id, prediction_id, tenant_id, value, observed_at, source, recorded_at, recorded_by, "
    "idempotency_key"
)
REASON_CODE_COLUMNS = "id, explanation_id, prediction_id, codes, created_at"
PLACEHOLDER_HASH = "0" * 64
OUTCOMES = ("approve", "review", "decline")
COUNTRIES = ("DE", "FR", "US", "GB", "NL", "ES", "IT", "PL")


def prediction_rows(
    rows: int, start: dt.datetime, model_ids: list[int], actors: list[tuple[int, str]]
) -> Iterator[tuple[Any, ...]]:
    """The rows, oldest first, spread evenly (with jitter) over 90 days; a share of them about
    a data subject (their own random stream: the other columns are as before issue #14)."""
    rng = random.Random(4)
    subjects = random.Random(6)
    step = SPAN / rows
    redaction = json.dumps({"policy": "default", "paths": {"features": ["email"]}})
    auth_context = json.dumps({"auth": "session"})
    for i in range(rows):
        when = start + step * i + step * rng.random()
        confidence = rng.random()
        actor_id, tenant = actors[rng.randrange(len(actors))]
        features: dict[str, Any] = {f"f{j}": round(rng.gauss(0, 1), 4) for j in range(8)}
        features["country"] = COUNTRIES[i % len(COUNTRIES)]
        features["email"] = "*****"
        outcome = OUTCOMES[0 if confidence >= 0.66 else 1 if confidence >= 0.33 else 2]
        yield (
            str(uuid7_at(when, rng)),
            f"pred-{i:08d}",
            when,
            f"{rng.getrandbits(128):032x}",
            f"{rng.getrandbits(64):016x}",
            "",
            "",
            "prod",
            model_ids[rng.randrange(len(model_ids))],  # independent of which rows get explained
            actor_id,
            tenant,
            f"10.{i % 256}.{(i // 256) % 256}.{i % 7 + 1}",
            "python-requests/2.32",
            auth_context,
            json.dumps(features),
            redaction,
            PLACEHOLDER_HASH,
            json.dumps({"score": round(confidence, 6), "label": outcome}),
            confidence,
            outcome,
            "success",
            "",
            "",
            round(rng.uniform(0.5, 40.0), 3),
            "{}",
            PLACEHOLDER_HASH,
            subject_ref(subjects.randrange(SUBJECTS)) if subjects.random() < SUBJECT_SHARE else "",
        )


@functools.lru_cache(maxsize=SUBJECTS)
def subject_ref(number: int) -> str:
    """A well-formed subject reference (64 lower-case hex digits) for subject ``number``."""
    return hashlib.sha256(f"subject-{number}".encode()).hexdigest()


def review_rows(
    reviewed: list[tuple[str, dt.datetime, str, str, bool]],
) -> Iterator[tuple[Any, ...]]:
    """One or two reviews per ``(id, timestamp, tenant, decision, override)``: sometimes a
    confirm first, then the last review (an override when asked, else by weight)."""
    rng = random.Random(8)
    actions = [action for action, _ in REVIEW_ACTIONS]
    weights = [weight for _, weight in REVIEW_ACTIONS]
    for prediction_id, when, tenant, decision, override in reviewed:
        last = "override" if override else rng.choices(actions, weights)[0]
        steps = ["confirm", last] if last != "confirm" and rng.random() < 0.4 else [last]
        for n, action in enumerate(steps):
            at = when + dt.timedelta(hours=1 + n)
            final = ""
            if action == "override":
                final = next(o for o in OUTCOMES[rng.randrange(3) :] + OUTCOMES if o != decision)
            yield (
                str(uuid7_at(at, rng)),
                prediction_id,
                tenant,
                action,
                final,
                "user",
                f"reviewer-{rng.randrange(50):02d}",
                "policy" if action == "override" else "",
                "Checked against the file." if action != "confirm" else "",
                "{}",
                at,
                "",
                "",
            )


def outcome_rows(observed: list[tuple[str, dt.datetime, str]]) -> Iterator[tuple[Any, ...]]:
    """The observed outcome of each ``(id, timestamp, tenant)`` 30 days on; a tenth get a
    correction a week later."""
    rng = random.Random(9)
    for prediction_id, when, tenant in observed:
        corrections = 2 if rng.random() < 0.1 else 1
        for n in range(corrections):
            at = when + dt.timedelta(days=30 + 7 * n)
            value = {"defaulted": rng.random() < 0.08, "days_late": rng.randrange(0, 90)}
            key = hashlib.sha256(f"{prediction_id}/{n}".encode()).hexdigest()
            yield (
                str(uuid7_at(at, rng)),
                prediction_id,
                tenant,
                json.dumps(value),
                at,
                "ledger",
                at + dt.timedelta(hours=1),
                "import",
                key,
            )


def load(rows: int) -> dict[str, Any]:
    """COPY ``rows`` predictions (+ 10% explanations with reason codes, and the reviews and
    outcomes of the module docstring) into the empty tables; ANALYZE."""
    from django.db import connection, transaction

    from ml_audit.models import ModelVersion, RequestingActor

    t0 = time.perf_counter()
    models = ModelVersion.objects.bulk_create(
        ModelVersion(model_name=f"model_{m:02d}", version="1.0", framework="sklearn")
        for m in range(MODELS)
    )
    actors = RequestingActor.objects.bulk_create(
        RequestingActor(actor_type="user", actor_id=f"user-{a:04d}", tenant_id=TENANTS[a % 4])
        for a in range(ACTORS)
    )
    model_ids = [m.pk for m in models]
    actor_keys = [(a.pk, a.tenant_id) for a in actors]
    start = (dt.datetime.now(dt.UTC) - SPAN).replace(microsecond=0)
    explained: list[tuple[str, dt.datetime]] = []  # 10% of the keys: (id, timestamp)
    sample_ids: list[str] = []  # 200 ids spread over the table, for the detail requests
    sample_every = max(1, rows // 200)
    # Issue #14: who was reviewed, whose outcome was observed; every 1,000th row (explained)
    # gets an override and an outcome, for the detail+ requests.
    chance = random.Random(7)
    reviewed: list[tuple[str, dt.datetime, str, str, bool]] = []
    observed: list[tuple[str, dt.datetime, str]] = []
    rich_ids: list[str] = []
    sample_subject = ""
    with transaction.atomic(), connection.cursor() as cursor:
        sql = f"COPY ml_audit_predictionevent ({PREDICTION_COLUMNS}) FROM STDIN"
        with cursor.copy(sql) as copy:
            for i, row in enumerate(prediction_rows(rows, start, model_ids, actor_keys)):
                copy.write_row(row)
                key, when, tenant, decision, subject = row[0], row[2], row[10], row[19], row[26]
                if i % 10 == 3:
                    explained.append((key, when))
                if i % sample_every == 0:
                    sample_ids.append(key)
                if not sample_subject and subject and i >= rows // 2:
                    sample_subject = subject
                rich = i % 1000 == 3
                if rich:
                    rich_ids.append(key)
                if rich or chance.random() < REVIEW_SHARE:
                    reviewed.append((key, when, tenant, decision, rich))
                if rich or chance.random() < OUTCOME_SHARE:
                    observed.append((key, when, tenant))
        t_predictions = time.perf_counter()
        rng = random.Random(5)
        coded: list[tuple[str, str, dt.datetime]] = []  # (explanation id, prediction id, when)
        sql = f"COPY ml_audit_explanation ({EXPLANATION_COLUMNS}) FROM STDIN"
        with cursor.copy(sql) as copy:
            for prediction_id, when in explained:
                later = when + dt.timedelta(seconds=1)
                payload = {f"f{j}": round(rng.gauss(0, 0.2), 4) for j in range(8)}
                explanation_id = str(uuid7_at(later, rng))
                coded.append((explanation_id, prediction_id, later))
                copy.write_row(
                    (
                        explanation_id,
                        prediction_id,
                        1,
                        "shap",
                        "0.46",
                        json.dumps({"attributions": payload, "base_value": 0.5}),
                        "f3 and f5 drove the score.",
                        "success",
                        later,
                        later,
                        PLACEHOLDER_HASH,
                    )
                )
        t_explanations = time.perf_counter()
        sql = f"COPY ml_audit_reasoncodes ({REASON_CODE_COLUMNS}) FROM STDIN"
        with cursor.copy(sql) as copy:
            for explanation_id, prediction_id, when in coded:
                codes = [
                    {
                        "code": f"R{j:02d}",
                        "text": f"Feature f{j} counted against the application.",
                        "feature": f"f{j}",
                        "direction": "+",
                        "contribution": round(0.3 / (n + 1), 4),
                    }
                    for n, j in enumerate((3, 5, rng.randrange(8)))
                ]
                copy.write_row(
                    (
                        str(uuid7_at(when, rng)),
                        explanation_id,
                        prediction_id,
                        json.dumps(codes),
                        when,
                    )
                )
        review_count = outcome_count = 0
        sql = f"COPY ml_audit_review ({REVIEW_COLUMNS}) FROM STDIN"
        with cursor.copy(sql) as copy:
            for review in review_rows(reviewed):
                copy.write_row(review)
                review_count += 1
        sql = f"COPY ml_audit_outcome ({OUTCOME_COLUMNS}) FROM STDIN"
        with cursor.copy(sql) as copy:
            for outcome in outcome_rows(observed):
                copy.write_row(outcome)
                outcome_count += 1
    t_decisions = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    t_end = time.perf_counter()
    rich_every = max(1, len(rich_ids) // 200)
    return {
        "data_version": DATA_VERSION,
        "rows": rows,
        "explanations": len(explained),
        "reviews": review_count,
        "reviewed_predictions": len(reviewed),
        "outcomes": outcome_count,
        "observed_predictions": len(observed),
        "copy_predictions_s": t_predictions - t0,
        "copy_explanations_s": t_explanations - t_predictions,
        "copy_decisions_s": t_decisions - t_explanations,
        "analyze_s": t_end - t_decisions,
        "total_s": t_end - t0,
        "start": start,
        "sample_ids": sample_ids,
        "rich_ids": rich_ids[::rich_every][:200],
        "sample_subject": sample_subject,
    }


def deep_cursor(rows_before: int) -> tuple[str, str]:
    """The cursor DRF would put in the ``next`` link after ``rows_before`` rows, and the id of
    the first row of that page."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT timestamp, id FROM ml_audit_predictionevent "
            "ORDER BY timestamp DESC, id DESC OFFSET %s LIMIT 2",
            [rows_before - 1],
        )
        (last_ts, _), (_, first_id) = cursor.fetchall()
    # CursorPagination.encode_cursor: urlencode({"p": position}) (no "o"/"r" when 0), base64;
    # position = str(getattr(row, ordering[0])) = str(timestamp).
    querystring = urlencode({"p": str(last_ts)})
    return base64.b64encode(querystring.encode("ascii")).decode("ascii"), str(first_id)


def configure(pagination: str, access_log: bool) -> None:
    from ml_audit.conf import audit_settings

    settings.ML_AUDIT = {
        "OTEL_ENABLED": False,
        "API_PAGINATION": pagination,
        "API_ACCESS_LOG": access_log,
    }
    audit_settings.reload()


def count_queries(request: Callable[[], Any]) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timings: list[float] = []

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append(time.perf_counter() - start)

    # CaptureQueriesContext keeps each query's time to the millisecond only: time them here.
    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(timed):
        request()
    kinds = {"auth": 0, "data": 0, "log": 0}
    data_sql: list[str] = []
    for query in captured.captured_queries:
        sql = query["sql"]
        if "ml_audit_accesslog" in sql:
            kinds["log"] += 1
        elif AUTH_TABLES.search(sql):
            kinds["auth"] += 1
        else:
            kinds["data"] += 1
            data_sql.append(sql)
    db_ms = sum(timings) * 1e3
    return {"total": sum(kinds.values()), **kinds, "db_ms": db_ms, "data_sql": data_sql}


def time_case(
    request: Callable[[int], Any], warmup: int, count: int, budget_s: float
) -> dict[str, Any]:
    for i in range(warmup):
        request(i)
    times: list[float] = []
    began = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        request(i)
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 and time.perf_counter() - began > budget_s:
            break
    ordered = sorted(times)
    return {
        "requests": len(ordered),
        "median_ms": statistics.median(ordered) * 1e3,
        "p90_ms": ordered[int(len(ordered) * 0.9)] * 1e3,
    }


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(_cut(row[0]) for row in cursor.fetchall())


def _cut(line: str, width: int = 160) -> str:
    return line if len(line) <= width else line[: width - 5] + " ..."


def add_repeat_and_reuse(parser: argparse.ArgumentParser, reuse_note: str = "") -> None:
    """``--repeat`` and ``--reuse``, as this benchmark and ``bench_admin.py`` read them."""
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure every case this many times (in turn) and report the median of the runs' "
        "medians, with their spread",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the benchmark database when an earlier run loaded it with the same --rows "
        "(checked against the tables; otherwise it is dropped and loaded again); new migrations "
        "are applied" + reuse_note,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="predictions to load")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per case")
    parser.add_argument("--budget", type=float, default=20.0, help="max seconds per case")
    parser.add_argument("--deep-page", type=int, default=10_000, help="page number of 'deep'")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE data queries")
    add_repeat_and_reuse(parser, "; the access log keeps the rows of earlier runs")
    args = parser.parse_args()

    setup(reuse=args.reuse)
    say = (lambda *a, **k: None) if args.json else print
    loaded = reusable(args.rows) if args.reuse else None
    if loaded is not None:
        say(f"reusing the {args.rows:,} predictions already loaded (--reuse)", flush=True)
        reused = True
    else:
        if args.reuse:  # the database held something else: start again from an empty one
            from django.core.management import call_command
            from django.db import connection as default_connection

            default_connection.close()
            _recreate_postgres_database(settings.DATABASES["default"])
            call_command("migrate", verbosity=0)
        say(f"loading {args.rows:,} predictions with COPY ...", flush=True)
        loaded = load(args.rows)
        save_meta({k: v for k, v in loaded.items()})
        reused = False
        say(
            f"  loaded in {loaded['total_s']:.1f} s (predictions "
            f"{loaded['copy_predictions_s']:.1f} s, {loaded['explanations']:,} explanations "
            f"{loaded['copy_explanations_s']:.1f} s, {loaded['reviews']:,} reviews and "
            f"{loaded['outcomes']:,} outcomes {loaded['copy_decisions_s']:.1f} s, "
            f"ANALYZE {loaded['analyze_s']:.1f} s)",
            flush=True,
        )

    from django.contrib.auth.models import Permission, User
    from django.db import connection
    from django.test import Client

    user = User.objects.filter(username="auditor").first() or User.objects.create_user(
        "auditor", password=None
    )
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="ml_audit", codename="view_predictionevent")
    )
    client = Client()
    client.force_login(user)

    deep_page = max(2, min(args.deep_page, args.rows // PAGE_SIZE))
    cursor, first_id = deep_cursor((deep_page - 1) * PAGE_SIZE)
    window_from = loaded["start"] + dt.timedelta(days=40)
    window = {
        "model_name": "model_03",
        "time_from": window_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "time_to": (window_from + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "min_confidence": "0.8",
    }
    sample_ids = loaded["sample_ids"]
    rich_ids = loaded["rich_ids"] or sample_ids
    # Issue #14's filters, each alone, and has_outcome=false with the filtered case's filters.
    decision_filters: dict[str, dict[str, str]] = {
        "subject": {"subject": loaded["sample_subject"]},
        "override": {"has_override": "true"},
        "action": {"review_action": "escalate"},
        "outcome": {"has_outcome": "true"},
        "no-outcome": {**window, "has_outcome": "false"},
    }

    def get(url: str, params: dict[str, str] | None = None) -> Any:
        response = client.get(url, params or {})
        if response.status_code != 200:
            raise SystemExit(f"GET {url} {params} -> {response.status_code}: {response.content!r}")
        return response

    cases: dict[str, dict[str, Callable[[int], Any]]] = {
        "cursor": {
            "floor": lambda i: get(API, {"page_size": "1"}),
            "list": lambda i: get(API),
            "deep": lambda i: get(API, {"cursor": cursor}),
            "filtered": lambda i: get(API, window),
            "detail": lambda i: get(f"{API}{sample_ids[i % len(sample_ids)]}/"),
            "detail+": lambda i: get(f"{API}{rich_ids[i % len(rich_ids)]}/"),
            **{
                name: functools.partial(lambda params, i: get(API, params), params)
                for name, params in decision_filters.items()
            },
        },
        "page": {
            "list": lambda i: get(API),
            "deep": lambda i: get(API, {"page": str(deep_page)}),
            "filtered": lambda i: get(API, window),
        },
    }
    runs = (("cursor", True), ("page", True), ("cursor", False))
    results: list[dict[str, Any]] = []
    explains: dict[str, str] = {}
    for repeat in range(args.repeat):
        for pagination, access_log in runs:
            configure(pagination, access_log)
            for name, request in cases[pagination].items():
                label = f"{name} ({pagination}, log {'on' if access_log else 'off'})"
                if repeat:  # the same case again, in the same order: only the timing
                    timing = time_case(request, args.warmup, args.requests, args.budget)
                    result = next(
                        r
                        for r in results
                        if (r["case"], r["pagination"], r["access_log"])
                        == (name, pagination, access_log)
                    )
                    result["runs"].append(timing)
                    say(f"  measured {label} (run {repeat + 1})", flush=True)
                    continue
                if name == "deep" and pagination == "cursor":
                    body = request(0).json()
                    if body["results"][0]["id"] != first_id:
                        say(f"  warning: deep cursor page starts at {body['results'][0]['id']}")
                if name == "filtered" and pagination == "cursor" and access_log:
                    matched = len(request(0).json()["results"])
                    say(f"  filtered first page: {matched} rows, filters {window}")
                if name in decision_filters and pagination == "cursor" and access_log:
                    matched = len(request(0).json()["results"])
                    say(f"  {name} first page: {matched} rows, filters {decision_filters[name]}")
                if name == "detail+" and pagination == "cursor" and access_log:
                    body = request(0).json()
                    say(
                        f"  detail+ reads {len(body['reviews'])} reviews, "
                        f"{len(body['outcomes'])} outcomes, "
                        f"{len((body['explanation'] or {}).get('reason_codes') or [])} reason codes"
                    )
                queries = count_queries(functools.partial(request, 0))
                timing = time_case(request, args.warmup, args.requests, args.budget)
                results.append(
                    {
                        "case": name,
                        "pagination": pagination,
                        "access_log": access_log,
                        "runs": [timing],
                        "target_ms": TARGETS_MS[name],
                        "queries": {k: v for k, v in queries.items() if k != "data_sql"},
                    }
                )
                if args.explain and access_log:
                    for n, sql in enumerate(queries["data_sql"]):
                        explains[f"{label} #{n + 1}"] = _cut(sql, 400) + "\n" + explain(sql)
                say(f"  measured {label}", flush=True)
    for r in results:
        # Each run's median, then the median of those: one busy moment does not decide.
        medians = [run["median_ms"] for run in r["runs"]]
        r["requests"] = sum(run["requests"] for run in r["runs"])
        r["median_ms"] = statistics.median(medians)
        r["p90_ms"] = statistics.median(run["p90_ms"] for run in r["runs"])
        r["run_medians_ms"] = medians
        r["within_target"] = None if r["target_ms"] is None else r["median_ms"] <= r["target_ms"]
    floors = {r["access_log"]: r["median_ms"] for r in results if r["case"] == "floor"}
    for r in results:
        r["above_floor_ms"] = r["median_ms"] - floors[r["access_log"]]
    connection.close()

    summary = {
        "backend": "postgresql",
        "load": {k: v for k, v in loaded.items() if k not in ("sample_ids", "rich_ids", "start")},
        "reused": reused,
        "page_size": PAGE_SIZE,
        "deep_page": deep_page,
        "deep_cursor": cursor,
        "filtered_params": window,
        "decision_filters": decision_filters,
        "results": results,
    }
    if args.explain:
        summary["explain"] = explains
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"\n{args.rows:,} predictions, page size {PAGE_SIZE}, deep = page {deep_page:,}; "
        "queries = auth + data + access log"
    )
    if args.repeat > 1:
        print(
            f"each median is the median of {args.repeat} runs' medians; 'runs' is the lowest "
            "and highest of those (the noise); '+floor' is the median minus the floor's "
            "(same access-log setting)"
        )
    else:
        print("'+floor' is the median minus the floor's (same access-log setting)")
    header = f"{'case':<12}{'pagination':<12}{'log':<5}{'n':>5}{'median ms':>11}{'p90 ms':>9}"
    header += f"{'runs':>14}{'+floor':>8}"
    print(header + f"{'target':>8}  ok   {'queries':<13}{'db ms':>6}")
    for r in results:
        q = r["queries"]
        queries_text = f"{q['total']} ({q['auth']}+{q['data']}+{q['log']})"
        target_text = "-" if r["target_ms"] is None else f"{r['target_ms']:.0f}"
        ok = {None: "-", True: "yes", False: "NO"}[r["within_target"]]
        runs_text = f"{min(r['run_medians_ms']):.1f}-{max(r['run_medians_ms']):.1f}"
        print(
            f"{r['case']:<12}{r['pagination']:<12}{'on' if r['access_log'] else 'off':<5}"
            f"{r['requests']:>5}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}{runs_text:>14}"
            f"{r['above_floor_ms']:>8.2f}{target_text:>8}"
            f"  {ok:<4} {queries_text:<13}{q['db_ms']:>6.2f}"
        )
    base = {(r["case"], r["pagination"], r["access_log"]): r["median_ms"] for r in results}
    for case in ("list", "deep", "filtered"):
        ratio = base[(case, "page", True)] / base[(case, "cursor", True)]
        print(f"  {case}: page-number / cursor median = {ratio:.2f}x")
    for case in ("list", "deep", "filtered", "detail"):
        ratio = base[(case, "cursor", True)] / base[(case, "cursor", False)]
        print(f"  {case}: access log on / off median = {ratio:.2f}x")
    for label, text in explains.items():
        print(f"\nEXPLAIN {label}:\n{text}")


if __name__ == "__main__":
    main()
