"""docs/runbook.md maps the runbook's rules to app.yaml keys; the README points only at files
that exist. Pure: reads files and the configuration model."""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from bot.config import Config

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = REPO / "docs" / "runbook.md"
KEY_COLUMN = "app.yaml key"
KEY_PATH = re.compile(r"^[a-z_]+(\[\])?(\.[a-z_]+(\[\])?)+$")  # a.b, services[].name


def backticked(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def keys_in_key_columns(markdown: str) -> list[str]:
    """Every backticked word in a table column headed "app.yaml key"."""
    keys: list[str] = []
    column: int | None = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if column is None:
            column = cells.index(KEY_COLUMN) if KEY_COLUMN in cells else -1
        elif column >= 0 and column < len(cells) and not set(cells[column]) <= set("-: "):
            keys.extend(backticked(cells[column]))
    return keys


def documented_keys() -> list[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    dotted = [t for t in backticked(text) if KEY_PATH.match(t) and not (REPO / t).exists()]
    return sorted(set(keys_in_key_columns(text)) | set(dotted))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def config_has(path: str) -> bool:
    """Whether ``path`` (``thresholds.min_requests``, ``services[].health_path``) is a key of
    app.yaml as bot/config.py defines it; ``[]`` only on a list."""
    model: type[BaseModel] | None = Config
    parts = path.split(".")
    for index, part in enumerate(parts):
        name = part.removesuffix("[]")
        field = model.model_fields.get(name) if model is not None else None
        annotation = field.annotation if field is not None else None
        if isinstance(annotation, UnionType):  # an optional section: `X | None` is X
            kinds = [a for a in get_args(annotation) if a is not type(None)]
            annotation = kinds[0] if len(kinds) == 1 else None
        if annotation is None:
            return False
        is_list = get_origin(annotation) in (tuple, list)
        marked, deeper = part.endswith("[]"), index < len(parts) - 1
        if marked != is_list and (marked or deeper):  # `[]` exactly where a list is entered
            return False
        model = _model_in(annotation)
    return True


def test_the_runbook_doc_names_the_keys_of_every_part_of_app_yaml() -> None:
    keys = documented_keys()
    assert {key.split(".")[0].removesuffix("[]") for key in keys} >= {
        "locale",
        "channels",
        "services",
        "roles",
        "approvals",
        "thresholds",
        "rollback",
        "release",
    }


@pytest.mark.parametrize("key", documented_keys())
def test_every_app_yaml_key_in_the_runbook_doc_exists_in_the_config_model(key: str) -> None:
    assert config_has(key), f"docs/runbook.md names `{key}`, which app.yaml does not have"


def test_the_key_check_refuses_what_app_yaml_does_not_have() -> None:
    assert config_has("services[].health_path")
    assert config_has("approvals.emergency_rollback.incidents_channel_only")
    assert not config_has("thresholds.error_rate")
    assert not config_has("services.health_path")
    assert not config_has("thresholds[].min_requests")
    assert config_has("release.steps")
    assert config_has("channels.releases.id") and not config_has("channels.releases.nope")


def test_every_part_of_the_runbook_is_automated_and_mapped() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    assert "## Not yet automated" not in text
    for section in (
        "## Feature flags",
        "## Backups and restore",
        "## Rollback readiness",
        "## Monthly rollback test",
    ):
        assert section in text


def test_the_readme_points_at_files_in_the_repository() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    named = [
        word
        for token in backticked(readme)
        for word in token.split()
        if re.search(r"\.(md|ya?ml|txt|py|sh|j2|json|toml)$", word) and not re.search("[:<*]", word)
    ]
    local = [path for path in links + named if not path.startswith(("http://", "https://"))]
    assert "docs/runbook.md" in local
    missing = sorted({path for path in local if not (REPO / path).exists()})
    assert missing == []
