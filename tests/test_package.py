"""Packaging promises: lazy imports, sorted public names, typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("imports", "forbidden"),
    [
        # The package itself: no models, no OpenTelemetry at import time.
        ("ml_audit", ("opentelemetry", "django.db.models", "ml_audit.models")),
        # The lower rooms of the house never import the models.
        (
            "ml_audit.records, ml_audit.redaction, ml_audit.exceptions, ml_audit.conf, "
            "ml_audit.validation, ml_audit.normalise, ml_audit.canonical, ml_audit.ids, "
            "ml_audit.explanation_records, ml_audit.otel.journal, ml_audit.otel.spool",
            ("ml_audit.models", "django.db.models"),
        ),
    ],
)
def test_imports_stay_light(imports: str, forbidden: tuple[str, ...]) -> None:
    code = (
        f"import sys; import {imports}; "
        f"bad = [m for m in sys.modules if m.startswith({forbidden!r})]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_ships_py_typed() -> None:
    assert (Path(ml_audit.__file__).parent / "py.typed").exists()


def test_version_sorts_above_the_0_2_0_release_it_succeeds() -> None:
    """``pip install -U`` must never replace this package with django-ml-audit 0.2.0."""
    from packaging.version import Version

    assert Version(ml_audit.__version__) > Version("0.2.0")


def test_every_module_imports_without_the_optional_accelerators() -> None:
    """orjson (the ``fast`` extra) and psycopg (``postgres``) are optional: with neither
    installed, every module of the package still imports (the verifier then hashes every row
    with the generic hasher, the spool and the API encode with the standard library)."""
    code = (
        "import sys, pkgutil, importlib, os\n"
        "sys.modules['orjson'] = None\n"
        "for name in ('psycopg', 'psycopg2'): sys.modules[name] = None\n"
        "os.environ.pop('DATABASE_URL', None)\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'\n"
        "import django; django.setup()\n"
        "import ml_audit\n"
        "names = [m.name for m in pkgutil.walk_packages(ml_audit.__path__, 'ml_audit.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "from ml_audit.sealing import pgcopy\n"
        "assert not pgcopy.FAST_HASHERS\n"
        "print(len(names))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout.split()[-1]) > 50  # the walk found the package's modules
