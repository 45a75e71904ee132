"""The README and the pages of docs/ link only to what exists: every relative Markdown link
resolves to a file (and to a heading of it, when it names one), every repository path a page
names in backticks (`bot/ops/engine.py`) exists, and every page of docs/ is reachable from the
README. Pure: reads files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
FILE_WORD = re.compile(r"\.(md|ya?ml|txt|py|sh|j2|json|toml|png)$")


def prose(page: Path) -> str:
    """The page without its code blocks (a shell command or a payload is not a link)."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in prose(page).splitlines() if line.startswith("#")}


def local_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(page))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def leads_nowhere(page: Path, target: str) -> bool:
    """A link relative to its page whose file, or the heading it names, is not there."""
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    if not file.exists():
        return True
    return bool(anchor) and (file.suffix != ".md" or anchor not in anchors(file))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_leads_to_a_file_that_exists(page: Path) -> None:
    broken = [target for target in local_links(page) if leads_nowhere(page, target)]
    assert broken == [], f"{page.relative_to(REPO)}: links that lead nowhere"


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_every_file_a_page_names_is_in_the_repository(page: Path) -> None:
    named = [
        word
        for token in re.findall(r"`([^`\n]+)`", page.read_text(encoding="utf-8"))
        for word in token.split()
        if "/" in word and FILE_WORD.search(word) and not re.search("[:<*{]", word)
    ]
    missing = sorted({word for word in named if not (REPO / word).exists()})
    assert missing == [], f"{page.relative_to(REPO)} names files the repository does not have"


def test_every_page_of_the_docs_is_linked_from_the_readme() -> None:
    linked = {(REPO / target.partition("#")[0]).resolve() for target in local_links(README)}
    unlinked = [page.name for page in DOCS if page.resolve() not in linked]
    assert unlinked == []


def test_the_checks_see_links_and_catch_a_broken_one(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n[a](other.md) [b](page.md#title) [c](page.md#nope) [d](https://x.example)\n"
        "```\n[e](inside-code.md)\n```\n",
        encoding="utf-8",
    )
    assert local_links(page) == ["other.md", "page.md#title", "page.md#nope"]
    assert anchors(page) == {"title"}
    broken = [target for target in local_links(page) if leads_nowhere(page, target)]
    assert broken == ["other.md", "page.md#nope"]
