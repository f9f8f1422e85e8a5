"""The README stays in step with the code: config table, test command."""

from __future__ import annotations

import re
from pathlib import Path

from flask_kpsession import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_config_table_lists_exactly_the_keys_in_defaults():
    rows = re.findall(
        r"^\| `(KPSESSION_[A-Z0-9_]+)` \|", _section("Configuration"), re.M
    )
    assert len(rows) == len(set(rows)), "a key has two rows"
    assert set(rows) == set(DEFAULTS)


def test_the_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = ".venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"
    readme_lines = [line for line in README.splitlines() if command in line]
    ci_lines = [line for line in ci.splitlines() if command in line]
    assert readme_lines and ci_lines
    assert readme_lines[0].strip() == ci_lines[0].strip()


def test_every_route_answer_code_in_the_readme_exists_in_the_code():
    codes = set(re.findall(r"^\| \d{3} \| `([a-z_]+)` \|", _section("Routes"), re.M))
    source = "".join(
        path.read_text(encoding="utf-8")
        for path in (ROOT / "flask_kpsession").glob("*.py")
    )
    assert codes
    assert {code for code in codes if f'"{code}"' not in source} == set()
