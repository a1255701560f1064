"""The README stays true: its settings reference and its two top commands."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ml_audit.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def settings_table() -> dict[str, str]:
    section = README.split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([A-Z_]+)` \| `(.*?)` \|", section, flags=re.MULTILINE))


def test_the_settings_reference_lists_every_key_with_its_default() -> None:
    table = settings_table()
    assert list(table) == list(DEFAULTS)  # same keys, same order as ml_audit/conf.py
    for key, default in table.items():
        assert ast.literal_eval(default) == DEFAULTS[key], key


def test_the_readme_starts_with_the_demo_and_the_test_commands() -> None:
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.DOTALL)
    demo, tests = blocks[0], blocks[1]
    assert README.index(demo) < README.index("---")
    assert demo.startswith("python3 -m venv .venv && ")
    assert demo.endswith(".venv/bin/python examples/demo/manage.py demo --check")
    assert '-e ".[demo]"' in demo  # only what the demo needs, not the development tools
    assert tests.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest\n" in ci  # the README's test command
    assert "examples/demo/manage.py demo" in ci  # and the demo, as a smoke test
    assert '-e ".[demo]"' in ci  # in a virtualenv with the demo extra only, as the README
