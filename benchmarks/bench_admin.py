"""Latency of the Django admin's prediction change list and detail page over a large audit trail.

Uses the same data as ``bench_read_api.py`` (``--rows`` predictions, default 1,000,000, loaded
with PostgreSQL ``COPY`` into DATABASE_URL's name + ``_bench``, 10% with an explanation, then
``ANALYZE``; its functions are reused, and so is a database it loaded), configures Django with
the admin (``django.contrib.admin``, sessions, messages, templates) and times requests through
Django's test client as a logged-in superuser (session authentication, so each request also pays
the session and user look-ups a real deployment pays):

* ``list``                  ``GET /admin/ml_audit/predictionevent/`` (first page, 100 rows)
* ``filter model``          ``?model__id__exact=`` the newest prediction's model
* ``filter outcome``        ``?decision_outcome=approve`` (about a third of the rows)
* ``filter status``         ``?status__exact=success`` (every row of the bench data)
* ``filter tenant``         ``?tenant_id=`` the newest prediction's tenant (a quarter)
* ``search prediction_id``  ``?q=`` the newest prediction's ``prediction_id``
* ``search trace_id``       ``?q=`` its ``trace_id``
* ``search actor_id``       ``?q=`` its actor's ``actor_id`` (about 1,000 predictions)
* ``date year/month/day``   the date hierarchy's ``timestamp__year`` (+ ``__month``, ``__day``)
  of the newest prediction's timestamp (UTC)
* ``page 50``               ``?p=50`` (the admin's page numbers are 1-based)
* ``detail``                ``/admin/ml_audit/predictionevent/<pk>/change/`` (a different
  prediction each request, from the 200 ids spread over the table that the load kept)

Each case is checked to answer 200 and reported as the median and p90 in ms over
``--requests`` requests after ``--warmup`` untimed ones, with the number of SQL queries of one
request and the time of its slowest query (timed around each query with
``connection.execute_wrapper``; ``CaptureQueriesContext`` cannot be used: the test client's
``request_started`` signal resets the connection's query log). The count text the unfiltered
list shows is printed too, so that a reader sees whether it is the planner's estimate. Figures
only: there is no target.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ml_audit_h1 \\
        .venv/bin/python benchmarks/bench_admin.py --reuse [--rows 1000000] [--requests 30] \\
        [--warmup 5] [--repeat 3] [--json]

``--reuse`` keeps the benchmark database when an earlier run of this benchmark or of
``bench_read_api.py`` loaded it with the same ``--rows`` (checked against the tables); without it,
or when the database holds anything else, it is dropped and loaded again. ``--repeat N`` measures
every case N times, in turn, and reports the median of the runs' medians with their spread.

PostgreSQL only (``COPY``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import html
import json
import math
import re
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import bench_read_api as read
import django
from _django import _recreate_postgres_database
from django.conf import settings

CHANGELIST = "/admin/ml_audit/predictionevent/"
ADMIN_USER = "bench-admin"


def setup(reuse: bool = False) -> None:
    """Configure Django with the admin, migrate a fresh database (or, with ``reuse``, the
    existing one: see :func:`bench_read_api.reusable`)."""

    from tests.settings import TEMPLATES

    def routes() -> list[Any]:
        from django.contrib import admin
        from django.urls import path

        return [path("admin/", admin.site.urls)]

    read.setup(
        reuse,
        label="bench_admin",
        apps=("django.contrib.admin", "django.contrib.messages"),
        middleware=("django.contrib.messages.middleware.MessageMiddleware",),
        routes=routes,
        TEMPLATES=TEMPLATES,  # the test project's: the admin's context processors
    )


def count_queries(request: Callable[[], Any]) -> dict[str, Any]:
    """The queries one request runs: how many, their total time, the slowest one."""
    from django.db import connection

    timings: list[tuple[float, str]] = []

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append((time.perf_counter() - start, sql))

    with connection.execute_wrapper(timed):
        request()
    slowest_s, slowest_sql = max(timings, default=(0.0, ""))
    return {
        "total": len(timings),
        "db_ms": sum(t for t, _ in timings) * 1e3,
        "slowest_ms": slowest_s * 1e3,
        "slowest_sql": slowest_sql,
    }


def count_text(page: str) -> str:
    """What the change list says about how many rows it holds: the paginator's line (without
    its page links) and the search bar's "N results" when it shows one."""

    def text(fragment: str) -> str:
        return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())

    found: list[str] = []
    paginator = re.search(r'<p class="paginator">(.*?)</p>', page, re.S)
    if paginator:  # drop the page links ("1 2 3 4 ... 10000"), keep "N prediction events"
        links = r"<a [^>]*>.*?</a>|<span [^>]*>.*?</span>|\u2026|&hellip;"
        found.append(text(re.sub(links, " ", paginator.group(1), flags=re.S)))
    found += [text(m) for m in re.findall(r'<span class="small quiet">(.*?)</span>', page, re.S)]
    if not any(found):  # another template: any line that speaks of results
        found = [text(line) for line in page.splitlines() if re.search(r"\bresults?\b", line)]
    return " | ".join(t for t in found if t) or "(no count shown)"


def load_or_reuse(rows: int, reuse: bool, say: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """The load's description (``bench_read_api.load``) and whether it was reused."""
    loaded = read.reusable(rows) if reuse else None
    if loaded is not None:
        say(f"reusing the {rows:,} predictions already loaded (--reuse)", flush=True)
        return loaded, True
    if reuse:  # the database held something else: start again from an empty one
        from django.core.management import call_command
        from django.db import connection

        connection.close()
        _recreate_postgres_database(settings.DATABASES["default"])
        call_command("migrate", verbosity=0)
    say(f"loading {rows:,} predictions with COPY ...", flush=True)
    loaded = read.load(rows)
    read.save_meta(loaded)
    say(
        f"  loaded in {loaded['total_s']:.1f} s (predictions "
        f"{loaded['copy_predictions_s']:.1f} s, {loaded['explanations']:,} explanations "
        f"{loaded['copy_explanations_s']:.1f} s, ANALYZE {loaded['analyze_s']:.1f} s)",
        flush=True,
    )
    return loaded, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="predictions to load")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per case")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    read.add_repeat_and_reuse(parser)
    args = parser.parse_args()

    setup(reuse=args.reuse)
    say = (lambda *a, **k: None) if args.json else print
    loaded, reused = load_or_reuse(args.rows, args.reuse, say)

    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from ml_audit.models import PredictionEvent

    user = User.objects.filter(username=ADMIN_USER).first() or User.objects.create_superuser(
        ADMIN_USER, "bench-admin@example.com", password=None
    )
    client = Client()
    client.force_login(user)

    newest = (
        PredictionEvent.objects.order_by("-timestamp", "-id")
        .values(
            "prediction_id", "trace_id", "timestamp", "model_id", "tenant_id", "actor__actor_id"
        )
        .first()
    )
    if newest is None:
        raise SystemExit("no predictions in the benchmark database")
    when = newest["timestamp"].astimezone(dt.UTC)
    year = {"timestamp__year": str(when.year)}
    month = {**year, "timestamp__month": str(when.month)}
    day = {**month, "timestamp__day": str(when.day)}
    detail_ids = [str(pk) for pk in loaded["sample_ids"]]

    def get(url: str) -> Any:
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"GET {url} -> {response.status_code}: {response.content[:500]!r}")
        return response

    def changelist(params: dict[str, str] | None = None) -> Callable[[int], Any]:
        url = CHANGELIST + (f"?{urlencode(params)}" if params else "")
        return lambda i: get(url)

    cases: dict[str, Callable[[int], Any]] = {
        "list": changelist(),
        "filter model": changelist({"model__id__exact": str(newest["model_id"])}),
        "filter outcome": changelist({"decision_outcome": "approve"}),
        "filter status": changelist({"status__exact": "success"}),
        "filter tenant": changelist({"tenant_id": newest["tenant_id"]}),
        "search prediction_id": changelist({"q": newest["prediction_id"]}),
        "search trace_id": changelist({"q": newest["trace_id"]}),
        "search actor_id": changelist({"q": newest["actor__actor_id"] or ""}),
        "date year": changelist(year),
        "date month": changelist(month),
        "date day": changelist(day),
        "page 50": changelist({"p": "50"}),
        "detail": lambda i: get(f"{CHANGELIST}{detail_ids[i % len(detail_ids)]}/change/"),
    }

    results: dict[str, dict[str, Any]] = {}
    list_count_text = ""
    for repeat in range(args.repeat):
        for name, request in cases.items():
            if repeat == 0:
                page = request(0).content.decode()
                if name == "list":
                    list_count_text = count_text(page)
                queries = count_queries(functools.partial(request, 0))
                results[name] = {
                    "case": name,
                    "shown": count_text(page) if name != "detail" else None,
                    "queries": queries["total"],
                    "db_ms": queries["db_ms"],
                    "slowest_query_ms": queries["slowest_ms"],
                    "slowest_query_sql": queries["slowest_sql"],
                    "runs": [],
                }
            timing = read.time_case(request, args.warmup, args.requests, math.inf)
            results[name]["runs"].append(timing)
            run_text = f" (run {repeat + 1})" if args.repeat > 1 else ""
            say(f"  measured {name}{run_text}: {timing['median_ms']:.1f} ms", flush=True)
    for r in results.values():
        medians = [run["median_ms"] for run in r["runs"]]
        r["requests"] = sum(run["requests"] for run in r["runs"])
        r["median_ms"] = statistics.median(medians)
        r["p90_ms"] = statistics.median(run["p90_ms"] for run in r["runs"])
        r["run_medians_ms"] = medians
    connection.close()

    params = {
        "model_id": newest["model_id"],
        "tenant_id": newest["tenant_id"],
        "prediction_id": newest["prediction_id"],
        "trace_id": newest["trace_id"],
        "actor_id": newest["actor__actor_id"],
        "date": when.date().isoformat(),
        "detail_first_url": f"{CHANGELIST}{detail_ids[0]}/change/",
    }
    summary = {
        "backend": "postgresql",
        "django": django.get_version(),
        "rows": args.rows,
        "reused": reused,
        "load": {k: v for k, v in loaded.items() if k not in ("sample_ids", "start")},
        "params": params,
        "list_count_text": list_count_text,
        "results": list(results.values()),
    }
    if args.json:
        print(json.dumps(summary, default=str))
        return
    print(f"\n{args.rows:,} predictions, Django {django.get_version()} admin, superuser")
    print(f"parameters: {json.dumps(params, default=str)}")
    print(f"'list' shows: {list_count_text} (the table holds {args.rows:,} rows)")
    if args.repeat > 1:
        print(
            f"each median is the median of {args.repeat} runs' medians; 'runs' is the lowest "
            "and highest of those (the noise)"
        )
    print(
        f"{'case':<22}{'n':>5}{'median ms':>11}{'p90 ms':>9}{'runs':>15}"
        f"{'queries':>9}{'db ms':>9}{'slowest ms':>12}"
    )
    for r in results.values():
        runs_text = f"{min(r['run_medians_ms']):.1f}-{max(r['run_medians_ms']):.1f}"
        print(
            f"{r['case']:<22}{r['requests']:>5}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}"
            f"{runs_text:>15}{r['queries']:>9}{r['db_ms']:>9.2f}{r['slowest_query_ms']:>12.2f}"
        )
    print("\nslowest query of each case (one request):")
    for r in results.values():
        sql = " ".join(r["slowest_query_sql"].split())
        print(f"  {r['case']:<22}{r['slowest_query_ms']:>9.2f} ms  {read._cut(sql, 200)}")
    print("\ncount shown by each change list:")
    for r in results.values():
        if r["shown"] is not None:
            print(f"  {r['case']:<22}{r['shown']}")


if __name__ == "__main__":
    main()
