"""Packaging promises: lazy imports, sorted public names, typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ml_audit


def test_public_names_are_sorted_and_resolve() -> None:
    assert ml_audit.__all__ == sorted(ml_audit.__all__)
    for name in ml_audit.__all__:
        assert getattr(ml_audit, name) is not None
    from ml_audit.services import record_prediction_event

    assert ml_audit.record_prediction_event is record_prediction_event


def test_version_comes_from_package_metadata() -> None:
    from importlib.metadata import version

    assert ml_audit.__version__ == version("django-ml-audit")


def test_importing_the_package_loads_no_models_and_no_opentelemetry() -> None:
    code = (
        "import sys, ml_audit; "
        "bad = [m for m in sys.modules if m.startswith(('opentelemetry', 'django.db.models', "
        "'ml_audit.models'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lower_rooms_import_no_models() -> None:
    code = (
        "import sys; "
        "import ml_audit.records, ml_audit.redaction, ml_audit.exceptions, ml_audit.conf; "
        "bad = [m for m in sys.modules if m.startswith(('ml_audit.models', 'django.db.models'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_ships_py_typed() -> None:
    assert (Path(ml_audit.__file__).parent / "py.typed").exists()
