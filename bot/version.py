"""Runback's version, from its one source: pyproject.toml (in the checkout), else the installed
package's metadata (which was built from it)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def version() -> str:
    if PYPROJECT.is_file():
        with PYPROJECT.open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    try:
        return metadata.version("runback")
    except metadata.PackageNotFoundError:
        return "unknown"
