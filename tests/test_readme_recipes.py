"""The documentation's sandbox recipes are the example scripts the tests run
(tests/test_processes.py runs every examples/*.txt in a fresh sandbox): each console line a recipe
names is a line of its script, in the same order, so a recipe that works in the docs works in a
fresh sandbox. The recipes live in the feature pages under docs/ (the README links to them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONSOLE_WORDS = ("as ", "in #", "click ", "submit ", "set ", "wait ", "alert ", "traffic ")


def recipe(script: str) -> list[str]:
    """The console lines of the one paragraph of the docs that says ``examples/SCRIPT`` runs it."""
    opening = f"In the sandbox (`examples/{script}` runs it"
    found = [page.read_text(encoding="utf-8") for page in PAGES]
    [text] = [text for text in found if opening in text]
    assert text.count(opening) == 1, f"one recipe for examples/{script}"
    start = text.index(opening)
    end = text.find("\n\n", start)
    paragraph = text[start : end if end != -1 else None]
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
