#!/usr/bin/env bash
# Runs django-ml-audit 0.2.0's own test suite (from its sdist on PyPI) against this package.
# Only its tests/ are used; its source is deleted so that `import ml_audit` can only be ours.
# Tests that pin 0.2.0 behaviour we changed on purpose are deselected here and listed, with
# the reason, in the README's "Upgrading from 0.2.0" section.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="$(command -v "${1:-python}")"
# Absolute, without resolving symlinks (a virtualenv's python is a symlink).
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "django-ml-audit==0.2.0" -d "$WORK"
tar -xzf "$WORK"/django_ml_audit-0.2.0.tar.gz -C "$WORK"
SUITE="$WORK/django_ml_audit-0.2.0"
rm -rf "$SUITE/src"
find "$SUITE" -name __pycache__ -prune -exec rm -rf {} +

# Fail loudly if anything but this checkout's ml_audit were imported.
cat > "$SUITE/conftest.py" <<PY
import ml_audit, pathlib
assert pathlib.Path(ml_audit.__file__).resolve().is_relative_to(pathlib.Path("$ROOT").resolve()), ml_audit.__file__
PY

cd "$SUITE"
# Deliberate difference: re-attaching an explanation adds a revision (0.2.0 overwrote it).
"$PYTHON" -m pytest -p pytest_django --ds=tests.settings -p no:cacheprovider tests \
    --deselect tests/test_attach_explanation.py::test_attach_explanation_create_and_update
