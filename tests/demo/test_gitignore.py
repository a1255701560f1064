"""The demo's SQLite files, WAL and shared-memory files included, are not for git."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SQLITE_FILES = [
    "examples/demo/demo.sqlite3",
    "examples/demo/demo.sqlite3-wal",
    "examples/demo/demo.sqlite3-shm",
    "examples/demo/demo.sqlite3-journal",
]


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("path", SQLITE_FILES)
def test_gitignore_covers_the_demo_database_files(path: str) -> None:
    name = Path(path).name
    assert any(fnmatch.fnmatch(name, pattern) for pattern in ignore_patterns())


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_git_ignores_the_demo_database_files() -> None:
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *SQLITE_FILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.split() == SQLITE_FILES, result.stderr
