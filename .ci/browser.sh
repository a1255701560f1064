#!/usr/bin/env bash
# The rich admin in a real headless Chromium (project issue #4).
# Usage: .ci/browser.sh PYTHON   (a Python with django-ml-audit and its test deps installed)
# Installs Debian's chromium if missing; writes the screenshot to .ci/artifacts/.
set -euo pipefail

PYTHON="${1:?usage: $0 /path/to/python}"
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
CHROMIUM=/usr/bin/chromium
ARTIFACTS="$ROOT/.ci/artifacts"
SHOT="$ARTIFACTS/admin-prediction.png"

if [ ! -x "$CHROMIUM" ]; then
    echo "==> installing chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
"$CHROMIUM" --version 2>/dev/null || true

mkdir -p "$ARTIFACTS"
rm -f "$SHOT" "$ARTIFACTS/demo-admin-prediction.png" "$ARTIFACTS/admin-trail-integrity.png" \
    "$ARTIFACTS/admin-prediction-seal.png" "$ARTIFACTS/subject-report.png" \
    "$ARTIFACTS/demo-quality.png" "$ARTIFACTS/demo-subject-report.png"
echo "==> browser tests"
ML_AUDIT_CHROMIUM="$CHROMIUM" ML_AUDIT_SCREENSHOT_DIR="$ARTIFACTS" \
    "$PYTHON" -m pytest -m browser tests/browser -p no:cacheprovider

for shot in "$SHOT" "$ARTIFACTS/demo-admin-prediction.png" "$ARTIFACTS/admin-trail-integrity.png" \
    "$ARTIFACTS/admin-prediction-seal.png" "$ARTIFACTS/subject-report.png" \
    "$ARTIFACTS/demo-quality.png" "$ARTIFACTS/demo-subject-report.png"; do
    if [ ! -s "$shot" ]; then
        echo "no screenshot at $shot" >&2
        exit 1
    fi
    echo "screenshot: $shot"
done
