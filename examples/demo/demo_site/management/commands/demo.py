"""``manage.py demo``: set up, record a few hundred real predictions over HTTP, then serve.

1. OpenTelemetry: a global TracerProvider and ``DjangoInstrumentor`` (``demo_site.tracing``);
   with ``--otlp-endpoint`` (checked first: something must listen there) spans are also
   exported over OTLP/HTTP (Phoenix works) and the admin's trace links point there. Those links
   are built for every row from one template, so such a run starts on a fresh database: every
   row in it then has its trace at the endpoint. Without an endpoint there are no trace links.
2. Migrates the SQLite database, creates the callers (API keys, tenants) and an ``auditor``
   who may read the audit trail.
3. Trains the model, starts the site on ``--host``/``--port`` and sends ``--count`` real HTTP
   requests to ``POST /api/score/`` from mixed callers: some with PII that must come out
   redacted, some refused by validation, some the model refuses (recorded as failures).
4. Records ``--weeks`` earlier weeks of decisions, officers' reviews and overrides, and
   observed outcomes (``demo_site.history``), so that the admin's quality page has a chart and
   an applicant's subject report has reviews, outcomes and reason codes.
5. Checks what was recorded with ``--check``, prints where to look (the login page of the
   browsable API among it) and serves until Ctrl-C; ``--no-serve`` stops after sending and
   prints the command that serves it instead.
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

AUDITOR = "auditor"
#: The auditor reads everything, including who asked and from where.
AUDITOR_PERMISSIONS = (
    "view_predictionevent",
    "view_explanation",
    "view_modelversion",
    "view_requestingactor",
    "view_accesslog",
    "view_review",
    "view_outcome",
    "view_reasoncodes",
    "view_seal",
    "view_legalhold",
    "view_purgerecord",
    "view_subjecterasure",
)
#: A credit officer: reads the trail like the auditor and may also review (the admin's
#: review form on a prediction's page); signs in with the auditor's password.
OFFICER = "officer"
OFFICER_PERMISSIONS = (*AUDITOR_PERMISSIONS, "add_review")
DEFAULT_WEEKS = 4
DEFAULT_COUNT = 300
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_PROJECT = "ml-audit-demo"
PHOENIX_ENDPOINT = "http://127.0.0.1:6006/v1/traces"
API_PATH = "/api/ml-audit/predictions/"
#: DRF's login view (``rest_framework.urls``), back to the API once logged in.
LOGIN_PATH = f"/api-auth/login/?next={API_PATH}"
#: The files of one SQLite database: the database and its WAL, shared-memory and journal files.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
SQLITE_HEADER = b"SQLite format 3\x00"


def check_otlp_endpoint(url: str, timeout: float = 2.0) -> None:
    """Stop in one line if nothing listens at ``url``: the exporter would otherwise log a
    traceback for every batch it fails to send while the demo runs."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise CommandError(
            f"--otlp-endpoint must be an http(s) URL such as {PHOENIX_ENDPOINT}, not {url!r}"
        )
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CommandError(
            f"Nothing listens at {url} ({reason}). Start Phoenix in another terminal first "
            "(pip install arize-phoenix && phoenix serve: it listens on port 6006), "
            "or leave out --otlp-endpoint."
        ) from None


def remove_sqlite_database(name: str) -> list[Path]:
    """Remove the SQLite database ``name`` and its WAL/shared-memory/journal files; the
    removed paths. Refuses a file that is not an SQLite database."""
    database = Path(name)
    if database.is_file() and database.stat().st_size:
        with database.open("rb") as file:
            if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise CommandError(f"{database} is not an SQLite database; not removing it.")
    removed = []
    for suffix in SQLITE_SUFFIXES:
        path = database.with_name(database.name + suffix)
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


class Command(BaseCommand):
    help = "Record real, explained, redacted predictions through the demo site, then serve it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--count", type=int, default=DEFAULT_COUNT, help=f"requests to send ({DEFAULT_COUNT})"
        )
        parser.add_argument("--host", default=DEFAULT_HOST)
        parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: any free port")
        parser.add_argument(
            "--weeks",
            type=int,
            default=DEFAULT_WEEKS,
            help=f"earlier weeks of decisions with outcomes ({DEFAULT_WEEKS}; 0: none)",
        )
        parser.add_argument("--no-serve", action="store_true", help="stop after sending")
        parser.add_argument("--check", action="store_true", help="verify what was recorded")
        parser.add_argument(
            "--otlp-endpoint",
            help="also export spans, e.g. Phoenix's /v1/traces (starts on a fresh database)",
        )
        parser.add_argument(
            "--trace-url-template", help="with --otlp-endpoint; default: Phoenix's trace links"
        )
        parser.add_argument("--project", default=DEFAULT_PROJECT, help="Phoenix project name")
        parser.add_argument("--password", help="the auditor's password (default: random)")

    def handle(self, *args: Any, **options: Any) -> None:
        from demo_site import tracing

        if options["count"] < 0:
            raise CommandError("--count must be 0 or more")
        if options["weeks"] < 0:
            raise CommandError("--weeks must be 0 or more")
        endpoint = options["otlp_endpoint"]
        template = options["trace_url_template"]
        if template and not endpoint:
            raise CommandError(
                "--trace-url-template needs --otlp-endpoint: without it no trace is exported, "
                "so every trace link would be a dead end."
            )
        if endpoint:
            check_otlp_endpoint(endpoint)
            if not template:
                parts = urlsplit(endpoint)
                template = f"{parts.scheme}://{parts.netloc}/redirects/traces/{{trace_id}}"
            self.start_fresh_database()
        # The admin and the API link every row with a trace id to the template: only rows
        # recorded by this run, whose spans went to this endpoint, may be in the database then.
        self.set_trace_url_template(template)
        provider = tracing.configure(
            otlp_endpoint=endpoint, project=options["project"], keep_spans=options["check"]
        )

        self.stdout.write("Migrating the demo database ...")
        call_command("migrate", verbosity=0, interactive=False)
        password = options["password"] or secrets.token_urlsafe(12)
        keys = self.create_users(password)

        started = time.perf_counter()
        from demo_site.model import MODEL_NAME, MODEL_VERSION, trained_model

        trained_model()
        self.stdout.write(
            f"Trained {MODEL_NAME} {MODEL_VERSION} (logistic regression, synthetic data) "
            f"in {1000 * (time.perf_counter() - started):.0f} ms"
        )

        server = self.start_server(options["host"], options["port"])
        host, port = server.server_address[:2]
        base_url = f"http://{host}:{port}"
        sent = self.send_traffic(base_url, options["count"], keys)
        self.summarise(sent)
        recorded = self.record_history(options["weeks"], sent)
        provider.force_flush()
        if options["check"]:
            self.verify(base_url, (AUDITOR, password), sent, template, recorded)
        if options["no_serve"]:
            server.shutdown()
            server.server_close()
            self.how_to_serve(options, password, template)
            return
        self.where_to_look(base_url, password, template)
        self.stdout.write(f"Serving on {base_url}/ - press Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()

    def start_fresh_database(self) -> None:
        """With an OTLP endpoint: no row from an earlier run, whose spans this endpoint never
        received, may get a trace link."""
        from django.db import connections

        database = settings.DATABASES["default"]
        if database["ENGINE"] != "django.db.backends.sqlite3" or database["NAME"] == ":memory:":
            return
        connections["default"].close()
        if remove_sqlite_database(str(database["NAME"])):
            self.stdout.write(
                f"Starting on a fresh database (--otlp-endpoint: every recorded prediction "
                f"links to its trace there), removed the previous {database['NAME']}"
            )

    def set_trace_url_template(self, template: str | None) -> None:
        from ml_audit.conf import audit_settings

        settings.ML_AUDIT["TRACE_URL_TEMPLATE"] = template
        audit_settings.reload()

    def create_users(self, password: str) -> dict[str, str]:
        from demo_site.auth import SERVICE_GROUP, TENANT_PREFIX, api_key_for
        from demo_site.traffic import CALLERS

        User = get_user_model()
        auditor, _ = User.objects.get_or_create(username=AUDITOR, defaults={"is_staff": True})
        auditor.is_staff = True
        auditor.set_password(password)
        auditor.save()
        auditor.user_permissions.set(
            Permission.objects.filter(
                content_type__app_label="ml_audit", codename__in=AUDITOR_PERMISSIONS
            )
        )
        officer, _ = User.objects.get_or_create(username=OFFICER, defaults={"is_staff": True})
        officer.is_staff = True
        officer.set_password(password)
        officer.save()
        officer.user_permissions.set(
            Permission.objects.filter(
                content_type__app_label="ml_audit", codename__in=OFFICER_PERMISSIONS
            )
        )
        keys = {}
        service, _ = Group.objects.get_or_create(name=SERVICE_GROUP)
        for caller in CALLERS:
            user, _ = User.objects.get_or_create(username=caller.username)
            tenant, _ = Group.objects.get_or_create(name=f"{TENANT_PREFIX}{caller.tenant}")
            user.groups.set([tenant, service] if caller.service else [tenant])
            keys[caller.username] = api_key_for(caller.username)
        return keys

    def start_server(self, host: str, port: int) -> Any:
        from django.contrib.staticfiles.handlers import StaticFilesHandler
        from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
        from django.core.wsgi import get_wsgi_application

        class QuietHandler(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                if not getattr(self.server, "quiet", False):
                    super().log_message(format, *args)

        try:
            server = ThreadedWSGIServer((host, port), QuietHandler)
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {host}:{port} ({exc}); try --port 0 for any free port."
            ) from exc
        server.quiet = True  # type: ignore[attr-defined]
        server.set_app(StaticFilesHandler(get_wsgi_application()))
        threading.Thread(target=server.serve_forever, name="demo-server", daemon=True).start()
        return server

    def send_traffic(self, base_url: str, count: int, keys: dict[str, str]) -> list[Any]:
        from demo_site.traffic import applications, send

        # The access log of a WSGI server is noise while the demo talks to itself.
        logging.getLogger("django.server").setLevel(logging.ERROR)
        sent = []
        started = time.perf_counter()
        for done, application in enumerate(applications(count), start=1):
            sent.append(send(base_url, application, keys[application.caller.username]))
            self.progress(done, count)
        elapsed = time.perf_counter() - started
        self.stdout.write(
            f"Sent {count} requests in {elapsed:.1f} s"
            + (f" ({1000 * elapsed / count:.1f} ms each)" if count else "")
        )
        return sent

    def record_history(self, weeks: int, sent: list[Any]) -> Any:
        """Earlier weeks' decisions, reviews and outcomes (``demo_site.history``)."""
        from demo_site import history

        started = time.perf_counter()
        officer = get_user_model().objects.get(username=OFFICER)
        recorded = history.record(weeks, sent, officer)
        reviews = ", ".join(f"{action} {n}" for action, n in sorted(recorded.reviews.items()))
        self.stdout.write(
            f"Recorded {recorded.history} decisions of the {weeks} weeks before today, "
            f"reviews ({reviews or 'none'}) and {recorded.outcomes} observed outcomes in "
            f"{time.perf_counter() - started:.1f} s"
        )
        return recorded

    def progress(self, done: int, total: int, width: int = 30) -> None:
        filled = width * done // max(total, 1)
        line = f"  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} predictions"
        if sys.stdout.isatty():
            self.stdout.write("\r" + line, ending="\n" if done == total else "")
            self.stdout.flush()
        elif done == total or done % max(total // 5, 1) == 0:
            self.stdout.write(line)

    def summarise(self, sent: list[Any]) -> None:
        statuses = collections.Counter(s.status for s in sent)
        decisions = collections.Counter(s.body.get("decision") for s in sent if s.status == 200)
        self.stdout.write(
            "Responses: "
            + ", ".join(f"HTTP {code}: {n}" for code, n in sorted(statuses.items()))
            + "; decisions: "
            + ", ".join(f"{d}: {n}" for d, n in sorted(decisions.items()))
        )
        unexpected = {code for code in statuses if code not in (200, 400, 422)}
        if unexpected:
            raise CommandError(f"unexpected responses: {sorted(unexpected)}")

    def verify(
        self,
        base_url: str,
        credentials: tuple[str, str],
        sent: list[Any],
        template: str | None,
        recorded: Any,
    ) -> None:
        from demo_site import tracing, verify

        try:
            rows = verify.rows_and_redaction(sent)
            api = verify.api(base_url, credentials, sent, template)
            subjects = verify.subjects(sent, tracing.kept.get_finished_spans())
            oversight = verify.oversight(recorded)
            quality = verify.quality(base_url, credentials)
            report = verify.subject_report(base_url, credentials, sent)
        except verify.DemoCheckFailed as failed:
            raise CommandError(f"demo check failed: {failed}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Check passed: {rows['recorded']} predictions recorded with their request's "
                f"trace id ({rows['explained']} explained, contributions adding up to the "
                f"model's log-odds), {rows['refused']} invalid requests refused and not "
                f"recorded, no PII in clear, read API answers ({api['api_rows_seen']} rows "
                "on its first page) and refuses anonymous reads."
            )
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Check passed: {subjects['with_subject']} predictions name their subject by a "
                f"pseudonymous reference ({subjects['subjects']} subjects), no applicant id in "
                f"any row, explanation or any of {subjects['spans']} spans; "
                f"{oversight['reviews']} reviews ({oversight['overrides']} overrides, each "
                f"prediction's effective outcome the override's) and {oversight['outcomes']} "
                f"outcomes; the quality API gives {quality['model']} {quality['weeks']} weeks "
                f"({quality['with_outcome']} outcomes, accuracy {percent(quality['accuracy'])}, "
                f"after overrides {percent(quality['effective_accuracy'])}); the subject report "
                f"of an applicant lists {report['decisions']} decisions with reason codes "
                f"({', '.join(report['codes'])}), as JSON and as a printable page."
            )
        )
        if settings.ML_AUDIT.get("SEALING"):
            try:
                trail = verify.sealed_trail(sent, report["subject_ref"])
            except verify.DemoCheckFailed as failed:
                raise CommandError(f"demo check failed: {failed}") from None
            self.stdout.write(
                self.style.SUCCESS(
                    f"Check passed: {trail['seals']} seals over {trail['sealed']} rows; one "
                    f"applicant forgotten (its key shredded, {trail['forgotten']} predictions "
                    "kept and no longer linked to anyone); ml_audit_verify finds nothing: "
                    "no row, seal or head changed."
                )
            )

    def where_to_look(self, base_url: str, password: str, template: str | None) -> None:
        self.stdout.write(
            "\nWhere to look (log in first: the API answers anonymous visitors 401):\n"
            f"  admin     {base_url}/admin/ml_audit/predictionevent/\n"
            f"  REST API  {base_url}{API_PATH}\n"
            f"  log in    {base_url}{LOGIN_PATH} (the admin's login works too)\n"
            f"  login     user {AUDITOR!r}, password {password!r} (admin and API)\n"
            f"  reviewer  user {OFFICER!r}, the same password (the review form of a prediction)\n"
            f"  quality   {base_url}/admin/ml_audit/outcome/quality/\n"
            f"  seals     {base_url}/admin/ml_audit/seal/ (Trail integrity)\n"
            f"  subjects  {base_url}/api/ml-audit/subjects/<subject_ref>/report/ "
            "(a prediction's subject_ref; a browser gets the printable page)\n"
            f"  database  {settings.DATABASES['default']['NAME']}\n"
            + (f"  traces    {template}\n" if template else "")
        )

    def how_to_serve(self, options: dict[str, Any], password: str, template: str | None) -> None:
        """``--no-serve``: the server has stopped, so no URL of it; the command that serves."""
        self.stdout.write(
            "\nThe server has stopped (--no-serve); what it recorded stays in the database:\n"
            f"  database  {settings.DATABASES['default']['NAME']}\n"
            f"  login     user {AUDITOR!r}, password {password!r} (admin and API)\n"
            + (f"  traces    {template}\n" if template else "")
            + "To serve the demo and look around, run it without --no-serve:\n"
            f"  {serve_command(options, password)}\n"
        )


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def serve_command(options: dict[str, Any], password: str) -> str:
    """The shell command of this run without ``--no-serve`` (and the same password)."""
    manage = Path(settings.BASE_DIR) / "manage.py"
    if manage.is_relative_to(Path.cwd()):
        manage = manage.relative_to(Path.cwd())
    argv = ["python", str(manage), "demo"]
    if options["count"] != DEFAULT_COUNT:
        argv += ["--count", str(options["count"])]
    if options["weeks"] != DEFAULT_WEEKS:
        argv += ["--weeks", str(options["weeks"])]
    if options["host"] != DEFAULT_HOST:
        argv += ["--host", options["host"]]
    if options["port"] != DEFAULT_PORT:
        argv += ["--port", str(options["port"])]
    if options["check"]:
        argv.append("--check")
    if options["otlp_endpoint"]:
        argv += ["--otlp-endpoint", options["otlp_endpoint"]]
    if options["trace_url_template"]:
        argv += ["--trace-url-template", options["trace_url_template"]]
    if options["project"] != DEFAULT_PROJECT:
        argv += ["--project", options["project"]]
    argv += ["--password", password]
    command = shlex.join(argv)
    database = os.environ.get("ML_AUDIT_DEMO_DB")
    return f"ML_AUDIT_DEMO_DB={shlex.quote(database)} {command}" if database else command
