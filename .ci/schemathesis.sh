#!/usr/bin/env bash
# Fuzz the read-only API from its own OpenAPI 3 document (schemathesis): no request may get a
# server error (5xx).
#
#   bash .ci/schemathesis.sh PYTHON [SCHEMATHESIS RUN ARGS...]
#
# PYTHON is the interpreter of a virtualenv with ml_audit, the drf and openapi extras and
# schemathesis (the CI venv). The script starts the tests project (tests.settings) on a free
# loopback port with a SQLite file database in a temporary directory, creates a user holding
# the API's read permissions and add_review (HTTP Basic: DRF's default authentication
# classes), records 30 predictions, 24 naming a subject, 20 with explanations, places two legal
# holds and seals it all (two seals), writes a schemathesis.toml that gives the subject report
# a real subject's reference and the review endpoint a real prediction, then runs schemathesis
# against /api/ml-audit/schema/ with the not_a_server_error check (all four phases: examples,
# coverage, fuzzing, stateful; SCHEMATHESIS_MAX_EXAMPLES per operation, default 50), bounded
# by SCHEMATHESIS_TIMEOUT seconds (default 600; a run takes about 4 minutes on 2 CPUs, most of
# it test generation). The server is stopped on exit. Exits
# non-zero on any server error.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 PYTHON [SCHEMATHESIS RUN ARGS...]" >&2
    exit 2
fi
PYTHON_ARG="$1"
shift
if ! PYTHON="$(command -v "$PYTHON_ARG")"; then
    echo "schemathesis.sh: $PYTHON_ARG is not an interpreter" >&2
    exit 2
fi
# Absolute, but not through symlinks: a virtualenv's python must stay the virtualenv's.
case "$PYTHON" in
    /*) ;;
    *) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;;
esac
SCHEMATHESIS="$(dirname "$PYTHON")/schemathesis"
if [ ! -x "$SCHEMATHESIS" ]; then
    echo "schemathesis.sh: no schemathesis next to $PYTHON (pip install schemathesis)" >&2
    exit 2
fi
TIMEOUT="${SCHEMATHESIS_TIMEOUT:-600}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-50}"

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
WORK="$(mktemp -d -t ml-audit-schemathesis.XXXXXX)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# tests.settings, a file database, and tracebacks of server errors in the server log
# (Django prints none when DEBUG is off).
cat >"$WORK/schemathesis_settings.py" <<'EOF'
from tests.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
# A sealing key, so that the seeded rows are sealed (seals/, predictions/{id}/seal/), and a
# subject key, so that the seeded predictions name their subjects (subjects/{ref}/report/).
ML_AUDIT = {
    "SEAL_KEY": "schemathesis-seal-key-not-secret-0123",
    "SEAL_KEY_ID": "fuzz",
    "SUBJECT_KEY": "schemathesis-subject-key-not-secret-0123",
}
EOF
export PYTHONPATH="$ROOT:$WORK${PYTHONPATH:+:$PYTHONPATH}"
export DJANGO_SETTINGS_MODULE=schemathesis_settings
export DATABASE_URL="sqlite:///$WORK/db.sqlite3"
USERNAME="schemathesis"
PASSWORD="schemathesis-not-secret"

echo "schemathesis.sh: migrate and seed ($WORK)"
"$PYTHON" -m django migrate --verbosity 0
"$PYTHON" - "$USERNAME" "$PASSWORD" "$WORK/schemathesis.toml" <<'EOF'
import datetime as dt
import sys

import django

django.setup()

from django.contrib.auth.models import Permission, User

from ml_audit.services import ActorPayload, attach_explanation, record_prediction_event

username, password, config = sys.argv[1:4]
user = User.objects.create_user(username, password=password)
for codename in (
    "view_predictionevent",
    "view_requestingactor",
    "view_seal",
    "view_legalhold",
    "view_review",  # with view_outcome: subjects/{ref}/report/
    "view_outcome",
    "add_review",  # POST predictions/{id}/reviews/
):
    user.user_permissions.add(Permission.objects.get(codename=codename))

t0 = dt.datetime(2026, 3, 3, 10, 0, tzinfo=dt.UTC)
for i in range(30):
    event = record_prediction_event(
        model_name=("fraud", "churn", "credit")[i % 3],
        model_version=str(1 + i % 2),
        features={"amount": i * 10, "country": ("FR", "DE", "US")[i % 3]},
        output={"score": i / 30},
        decision_outcome=("clean", "review", "block")[i % 3],
        confidence=i / 30,
        actor=ActorPayload(
            ("user", "service", "api_key")[i % 3],
            str(i),
            tenant_id=("acme", "globex")[i % 2],
            ip_address="203.0.113.9",
            user_agent="schemathesis-seed",
        ),
        environment=("prod", "staging")[i % 2],
        trace_id=f"{i:032x}",
        timestamp=t0 + dt.timedelta(minutes=i),
        subject=f"applicant-{i % 4}" if i % 5 else None,
    )
    if i == 1:
        reviewed, subject_ref = event.pk, event.subject_ref
    if i % 3 != 2:
        attach_explanation(event, "shap", {"amount": i / 100}, f"explanation {i}")
from ml_audit.retention import place_hold, release_hold
from ml_audit.sealing import seal_pending

place_hold(reason="fuzz", created_by="seed", tenant_id="acme", reference="F-1")
release_hold(place_hold(reason="fuzz", created_by="seed", everything=True), reason="done", created_by="seed")
seal_pending(max_rows=20, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
seal_pending(now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
# Path parameters the fuzzer cannot guess: a subject's reference, and a prediction to review
# (the bodies, queries and headers of those operations are still generated).
with open(config, "w") as file:
    file.write(
        "[[operations]]\n"
        'include-path = "/api/ml-audit/subjects/{subject_ref}/report/"\n'
        f'parameters = {{ "path.subject_ref" = "{subject_ref}" }}\n'
        "[[operations]]\n"
        'include-path = "/api/ml-audit/predictions/{id}/reviews/"\n'
        f'parameters = {{ "path.id" = "{reviewed}" }}\n'
    )
print(
    f"schemathesis.sh: seeded 30 predictions (24 naming one of 4 subjects), 2 holds and 2 seals"
    f" for user {username!r}; {config}"
)
EOF

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
SCHEMA_URL="$BASE/api/ml-audit/schema/"
"$PYTHON" -m django runserver "127.0.0.1:$PORT" --noreload --nothreading \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    if "$PYTHON" - "$SCHEMA_URL" "$USERNAME" "$PASSWORD" <<'EOF' 2>/dev/null; then
import base64
import sys
import urllib.request

url, user, password = sys.argv[1:4]
token = base64.b64encode(f"{user}:{password}".encode()).decode()
request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
with urllib.request.urlopen(request, timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
EOF
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "schemathesis.sh: the server did not start" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "schemathesis.sh: server at $BASE (pid $SERVER_PID), schema $SCHEMA_URL"

start=$SECONDS
status=0
# From the temporary directory: schemathesis writes its cache (.schemathesis/) to the cwd.
(cd "$WORK" && timeout "$TIMEOUT" "$SCHEMATHESIS" run "$SCHEMA_URL" \
    --auth "$USERNAME:$PASSWORD" \
    --checks not_a_server_error \
    --max-examples "$MAX_EXAMPLES" \
    --seed 0 \
    --generation-database none \
    --no-color \
    "$@") || status=$?
elapsed=$((SECONDS - start))

# The server's own count, whatever schemathesis reports.
requests="$(grep -cE '"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE) [^"]*" [0-9]{3}' \
    "$WORK/server.log" || true)"
server_errors="$(grep -cE '"[A-Z]+ [^"]*" 5[0-9]{2}' "$WORK/server.log" || true)"
echo
echo "schemathesis.sh: summary: ${requests} requests in ${elapsed} s, ${server_errors} server" \
    "errors, schemathesis exit status ${status}"
echo "schemathesis.sh: responses by status code:"
grep -oE '"[A-Z]+ [^"]*" [0-9]{3}' "$WORK/server.log" | awk '{print $NF}' | sort | uniq -c || true
echo "schemathesis.sh: 200 responses by endpoint:"
grep -E '" 200 ' "$WORK/server.log" | grep -oE 'GET /api/ml-audit/[a-z]+/([^/ ?"]+/)?' |
    sed -E 's#(/api/ml-audit/[a-z]+/)[^/]+/$#\1{id}/#' | sort | uniq -c || true
if [ "$server_errors" != "0" ]; then
    echo "schemathesis.sh: server errors (from the server log):" >&2
    grep -E '"[A-Z]+ [^"]*" 5[0-9]{2}|Internal Server Error|Traceback|Error' \
        "$WORK/server.log" | head -100 >&2
    exit 1
fi
if [ "$status" = "124" ]; then
    echo "schemathesis.sh: schemathesis did not finish within $TIMEOUT s" >&2
    exit 1
fi
if [ "$status" != "0" ]; then
    echo "schemathesis.sh: schemathesis failed (exit status $status)" >&2
    exit "$status"
fi
echo "schemathesis.sh: no server error"
