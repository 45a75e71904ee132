"""The README's sandbox recipes are the example scripts the tests run (tests/test_processes.py
runs every examples/*.txt in a fresh sandbox): each console line a recipe names is a line of its
script, in the same order, so a recipe that works in the README works in a fresh sandbox."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
CONSOLE_WORDS = ("as ", "in #", "click ", "submit ", "set ", "wait ", "alert ", "traffic ")


def recipe(script: str) -> list[str]:
    """The console lines of the README paragraph that says ``examples/SCRIPT`` runs it."""
    start = README.index(f"In the sandbox (`examples/{script}` runs it")
    paragraph = README[start : README.index("\n\n", start)]
    spans = re.findall(r"`([^`]+)`", paragraph.replace("\n", " "))
    return [s for s in spans if s.startswith("/") or s.startswith(CONSOLE_WORDS)]


@pytest.mark.parametrize("script", ["release.txt", "migration-release.txt"])
def test_a_readme_recipe_is_its_tested_script(script: str) -> None:
    lines = [
        line.strip()
        for line in (REPO / "examples" / script).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "expect"))
    ]
    wanted = recipe(script)
    assert len(wanted) >= 5, wanted
    at = 0
    for line in wanted:
        assert line in lines[at:], f"{line!r} is not in examples/{script} (after line {at})"
        at = lines.index(line, at) + 1
