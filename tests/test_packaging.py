"""Adoptable (issue 20): an Apache-2.0 licence, one version, a changelog, and an installable
package whose `runback` command works from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def test_the_licence_is_apache_2_in_the_file_the_metadata_and_the_readme() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
    assert "Apache License 2.0" in (REPO / "README.md").read_text()


def test_the_version_has_one_source_and_a_changelog_entry() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "bot", "--version"], cwd=REPO, capture_output=True, text=True
    )
    assert shown.returncode == 0 and shown.stdout.strip() == f"runback {VERSION}"
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{VERSION}]" in changelog


def test_every_package_of_bot_is_packaged() -> None:
    packaged = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.relative_to(REPO).parts)
        for path in (REPO / "bot").rglob("*")
        if path.is_dir() and path.name != "__pycache__" and any(path.glob("*.py"))
    }
    assert found | {"bot"} <= packaged, found - packaged


@pytest.mark.timeout(300)
def test_the_installed_runback_command_works_from_any_directory(tmp_path: Path) -> None:
    wheels, site, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    # a copy: a build leaves build/ and *.egg-info/ in the tree it builds
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".*", "__pycache__", "*.db", "build", "*.egg-info"),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if built.returncode != 0 and "No matching distribution" in built.stderr:
        pytest.skip("no package index to fetch the build backend from")
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("runback-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
        check=True,
        timeout=120,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}
    runback = str(site / "bin" / "runback")

    def command(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [runback, *args], cwd=elsewhere, env=env, input=stdin, capture_output=True, text=True
        )

    assert command("--version").stdout.strip() == f"runback {VERSION}"
    current = command("db", "current")
    assert current.returncode == 1 and "database is empty" in current.stderr + current.stdout
    assert command("db", "upgrade").returncode == 0
    assert command("db", "current").returncode == 0
    checked = command("check-migration", "-", stdin="ALTER TABLE t DROP COLUMN c;\n")
    assert checked.returncode == 1 and "DESTRUCTIVE" in checked.stdout, checked.stderr
