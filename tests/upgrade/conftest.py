"""The session's django-ml-audit 0.2.0 virtualenv (built once, cached between runs)."""

from __future__ import annotations

import pytest

from tests.upgrade.harness import OldVenv, ensure_old_venv, old_venv_path


@pytest.fixture(scope="session")
def old_venv(tmp_path_factory: pytest.TempPathFactory) -> OldVenv:
    """A virtualenv with django-ml-audit 0.2.0 from PyPI. A failed build is not raised here:
    ``old_venv.require()`` fails the test that needs it, with pip's output."""
    return ensure_old_venv(old_venv_path(), tmp_path_factory.mktemp("old-venv-scratch"))
