"""``manage.py demo``: set up, record a few hundred real predictions over HTTP, then serve.

1. OpenTelemetry: a global TracerProvider and ``DjangoInstrumentor`` (``demo_site.tracing``);
   with ``--otlp-endpoint`` spans are also exported over OTLP/HTTP (Phoenix works) and the
   admin's trace links point there.
2. Migrates the SQLite database, creates the callers (API keys, tenants) and an ``auditor``
   who may read the audit trail.
3. Trains the model, starts the site on ``--host``/``--port`` and sends ``--count`` real HTTP
   requests to ``POST /api/score/`` from mixed callers: some with PII that must come out
   redacted, some refused by validation, some the model refuses (recorded as failures).
4. Prints where to look, checks what was recorded with ``--check``, and serves until Ctrl-C
   (``--no-serve``: stop after sending).
"""

from __future__ import annotations

import collections
import logging
import secrets
import sys
import threading
import time
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
)


class Command(BaseCommand):
    help = "Record real, explained, redacted predictions through the demo site, then serve it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=300, help="requests to send (300)")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000, help="0: any free port")
        parser.add_argument("--no-serve", action="store_true", help="stop after sending")
        parser.add_argument("--check", action="store_true", help="verify what was recorded")
        parser.add_argument("--otlp-endpoint", help="also export spans, e.g. Phoenix's /v1/traces")
        parser.add_argument("--trace-url-template", help="default with an OTLP endpoint: Phoenix")
        parser.add_argument("--project", default="ml-audit-demo", help="Phoenix project name")
        parser.add_argument("--password", help="the auditor's password (default: random)")

    def handle(self, *args: Any, **options: Any) -> None:
        from demo_site import tracing

        if options["count"] < 0:
            raise CommandError("--count must be 0 or more")
        endpoint = options["otlp_endpoint"]
        provider = tracing.configure(otlp_endpoint=endpoint, project=options["project"])
        template = options["trace_url_template"]
        if endpoint and not template:
            parts = urlsplit(endpoint)
            template = f"{parts.scheme}://{parts.netloc}/redirects/traces/{{trace_id}}"
        if template:
            from ml_audit.conf import audit_settings

            settings.ML_AUDIT["TRACE_URL_TEMPLATE"] = template
            audit_settings.reload()

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
        provider.force_flush()
        self.summarise(sent)
        if options["check"]:
            self.verify(base_url, (AUDITOR, password), sent, template)
        self.where_to_look(base_url, password, template)
        if options["no_serve"]:
            server.shutdown()
            server.server_close()
            return
        self.stdout.write(f"Serving on {base_url}/ - press Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()

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
    ) -> None:
        from demo_site import verify

        try:
            rows = verify.rows_and_redaction(sent)
            api = verify.api(base_url, credentials, sent, template)
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

    def where_to_look(self, base_url: str, password: str, template: str | None) -> None:
        self.stdout.write(
            "\nWhere to look:\n"
            f"  admin     {base_url}/admin/ml_audit/predictionevent/\n"
            f"  REST API  {base_url}/api/ml-audit/predictions/\n"
            f"  login     user {AUDITOR!r}, password {password!r} (admin and API)\n"
            f"  database  {settings.DATABASES['default']['NAME']}\n"
            + (f"  traces    {template}\n" if template else "")
        )
