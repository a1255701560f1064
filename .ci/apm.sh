#!/usr/bin/env bash
# End-to-end APM tests: ml_audit's spans exported to a real Arize Phoenix (pytest -m apm).
#
#   bash .ci/apm.sh PYTHON [PYTEST ARGS...]
#
# PYTHON is the interpreter of a virtualenv with ml_audit and its dev extras (the CI venv).
# Phoenix goes into a separate virtualenv, .venv-phoenix (reused when it already has the pinned
# version). The tests start Phoenix themselves (tests/apm/conftest.py), from the interpreter
# named by ML_AUDIT_PHOENIX_PYTHON. Phoenix's OTLP/gRPC listener binds every interface, so
# the tests run in a private network namespace with only a loopback interface; PostgreSQL is
# not reachable from there, so they use the default SQLite settings (DATABASE_URL unset).
# A headless Chromium (Debian's, installed when missing) renders a Phoenix trace page; its
# screenshot is kept as a CI artifact: .ci/artifacts/phoenix-trace.png.
# Exits non-zero on failure.
set -euo pipefail

PHOENIX_VERSION="20.26.1"
CHROMIUM=/usr/bin/chromium

if [ $# -lt 1 ]; then
    echo "usage: $0 PYTHON [PYTEST ARGS...]" >&2
    exit 2
fi
PYTHON_ARG="$1"
shift
if ! PYTHON="$(command -v "$PYTHON_ARG")"; then
    echo "apm.sh: $PYTHON_ARG is not an interpreter" >&2
    exit 2
fi
# Absolute, but not through symlinks: a virtualenv's python must stay the virtualenv's.
case "$PYTHON" in
    /*) ;;
    *) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;;
esac

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PHX_VENV="$ROOT/.venv-phoenix"
PHX_PYTHON="$PHX_VENV/bin/python"
for tool in unshare ip; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "apm.sh: '$tool' is needed to run Phoenix in a private network namespace" >&2
        exit 1
    fi
done

phoenix_ok() {
    [ -x "$PHX_PYTHON" ] && "$PHX_PYTHON" - "$PHOENIX_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version

import phoenix.server.main  # noqa: F401  (imports, so the install is whole)

sys.exit(0 if version("arize-phoenix") == sys.argv[1] else 1)
EOF
}

if phoenix_ok; then
    echo "apm.sh: reusing $PHX_VENV (arize-phoenix $PHOENIX_VERSION)"
else
    echo "apm.sh: installing arize-phoenix $PHOENIX_VERSION into $PHX_VENV"
    start=$SECONDS
    rm -rf "$PHX_VENV"
    python3 -m venv "$PHX_VENV"
    # Keep the (large) virtualenv out of git, and so out of ruff's and mypy's way too.
    printf '*\n' >"$PHX_VENV/.gitignore"
    "$PHX_PYTHON" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$PHX_PYTHON" -m pip install --quiet --disable-pip-version-check \
        "arize-phoenix==$PHOENIX_VERSION"
    if ! phoenix_ok; then
        echo "apm.sh: arize-phoenix $PHOENIX_VERSION does not import after install" >&2
        exit 1
    fi
    echo "apm.sh: installed in $((SECONDS - start)) s"
fi

if [ ! -x "$CHROMIUM" ]; then
    echo "apm.sh: installing chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
ARTIFACTS="$ROOT/.ci/artifacts"
SHOT="$ARTIFACTS/phoenix-trace.png"
mkdir -p "$ARTIFACTS"
rm -f "$SHOT"

# Arguments for the inner shell, quoted for it.
# pyproject's addopts deselect the apm marker with -m 'not apm'; the later -m wins.
pytest_cmd=("$PYTHON" -m pytest -m apm tests/apm -p no:cacheprovider "$@")
printf -v inner 'ip link set lo up && exec %q' "${pytest_cmd[0]}"
for arg in "${pytest_cmd[@]:1}"; do
    printf -v inner '%s %q' "$inner" "$arg"
done

# A temporary directory of this run's own, so that Phoenix's log is easy to find.
RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/ml-audit-apm.XXXXXX")"
echo "apm.sh: running the APM tests in a private network namespace (temp dir $RUN_TMP)"
status=0
env -u DATABASE_URL \
    TMPDIR="$RUN_TMP" \
    ML_AUDIT_PHOENIX_PYTHON="$PHX_PYTHON" \
    ML_AUDIT_CHROMIUM="$CHROMIUM" \
    ML_AUDIT_SCREENSHOT_DIR="$ARTIFACTS" \
    unshare -n -- bash -c "$inner" || status=$?
logs="$(ls "$RUN_TMP"/ml-audit-phoenix-*/phoenix.log 2>/dev/null || true)"
echo "apm.sh: Phoenix log: ${logs:-none (Phoenix was not started)}"
if [ "$status" -ne 0 ]; then
    echo "apm.sh: APM tests failed (exit $status)" >&2
elif [ ! -s "$SHOT" ]; then
    echo "apm.sh: no Phoenix trace screenshot at $SHOT" >&2
    status=1
else
    echo "apm.sh: Phoenix trace screenshot: $SHOT"
fi
exit "$status"
