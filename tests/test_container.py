"""The container recipe, read without a Docker engine: two stages, a slim final image with no
build tools and a non-root user, `python -m bot serve`, and every file the app reads at run time
copied in (proved by importing every module and loading every template from a copy of exactly
what the Dockerfile and .dockerignore would put in the image)."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[1]
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "libpq-dev", "python3-dev")


def _stages() -> list[list[dict[str, str]]]:
    stages: list[list[dict[str, str]]] = []
    for instruction in DockerfileParser(path=str(REPO / "Dockerfile")).structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages and instruction["instruction"] != "COMMENT":
            stages[-1].append(instruction)
    return stages


def _values(stage: list[dict[str, str]], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def _command(value: str) -> list[str]:
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def _ignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is left out when it or a parent matches; ``**/`` is any depth."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(
                fnmatch.fnmatch("/".join(parts[n:m]), tail)
                for n in range(len(parts))
                for m in range(n + 1, len(parts) + 1)
            ):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def test_two_stages_and_the_final_one_is_slim_without_build_tools() -> None:
    stages = _stages()
    assert len(stages) >= 2, "a builder stage and a final stage"
    final = stages[-1]
    base = _values(final, "FROM")[0].split()[0]
    assert base.startswith("python:3.11") and "slim" in base, base
    final_text = " ".join(_values(final, "RUN")).lower()
    for tool in BUILD_TOOLS:
        assert tool not in final_text.split(), f"{tool} installed in the final stage"
    assert "apt-get install" not in final_text
    copies_from_builder = [v for v in _values(final, "COPY") if v.startswith("--from=")]
    assert copies_from_builder, "the final stage takes the builder's wheels"
    assert "--no-index" in final_text, "the final stage installs only the builder's wheels"


def test_the_final_stage_runs_serve_as_a_non_root_user() -> None:
    final = _stages()[-1]
    users = _values(final, "USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    commands = [_command(v) for v in _values(final, "ENTRYPOINT") + _values(final, "CMD")]
    assert ["python", "-m", "bot", "serve"] in commands, commands
    assert any(v.startswith("PORT=") for v in " ".join(_values(final, "ENV")).split())


def test_dockerignore_keeps_local_state_out_and_the_app_in() -> None:
    patterns = _ignore_patterns()
    for path in (
        ".venv/lib/python3.11/site.py",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/0.1/x",
        "bot/__pycache__/web.cpython-311.pyc",
        "runback.db",
        "data/runback.db",
        ".git/HEAD",
        "tests/test_web.py",
    ):
        assert ignored(path, patterns), f"{path} would go into the image"
    for path in ("bot/web.py", "templates/en/messages.yaml", "app.yaml", "requirements.txt"):
        assert not ignored(path, patterns), f"{path} would be left out of the image"


def _image_app_dir(target: Path) -> Path:
    """What the final stage's COPY instructions put in WORKDIR, after .dockerignore."""
    final = _stages()[-1]
    patterns = _ignore_patterns()
    workdir = Path(_values(final, "WORKDIR")[-1])
    for value in _values(final, "COPY"):
        if value.startswith("--from="):
            continue
        *sources, destination = shlex.split(value)
        for source in sources:
            for path in [REPO / source, *sorted((REPO / source).rglob("*"))]:
                relative = path.relative_to(REPO).as_posix()
                if path.is_dir() or ignored(relative, patterns):
                    continue
                inside = Path(destination)
                if destination.endswith("/") and (REPO / source).is_dir():
                    inside = inside / path.relative_to(REPO / source)
                elif destination in (".", "./") or destination.endswith("/"):
                    inside = inside / path.name
                if not inside.is_absolute():
                    inside = workdir / inside
                if not str(inside).startswith(str(workdir)):
                    continue  # e.g. /tmp/requirements.txt: not part of the app
                copy = target / inside.relative_to(workdir)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
    return target


def test_the_image_holds_every_file_the_app_reads(tmp_path: Path) -> None:
    app = _image_app_dir(tmp_path / "app")
    assert (app / "app.yaml").is_file() and (app / "templates").is_dir()
    probe = (
        "import importlib, pkgutil, bot\n"
        "for m in pkgutil.walk_packages(bot.__path__, 'bot.'): importlib.import_module(m.name)\n"
        "from bot.config import load_config\n"
        "from bot.render import Renderer, TEMPLATES_DIR\n"
        f"assert str(TEMPLATES_DIR).startswith({str(app)!r}), TEMPLATES_DIR\n"
        "load_config('app.yaml')\n"
        "for locale in ('en', 'es'): Renderer(locale).warm_up()\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RUNBACK_CONFIG")}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


@pytest.mark.parametrize("path", ["bot", "templates", "app.yaml"])
def test_each_run_time_path_is_copied(path: str) -> None:
    sources = [shlex.split(v)[0] for v in _values(_stages()[-1], "COPY") if "--from" not in v]
    assert any(s.rstrip("/") == path for s in sources), sources
