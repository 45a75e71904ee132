"""Shared fixtures: every test talks to the real client libraries over a real socket."""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from sqlalchemy import text

from bot.config import Config, load_config
from bot.database import make_engine
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import seed
from bot.store import Store
from tests.db import postgres_url
from tests.helpers import REPO, SECRET, TOKEN, BotProcess, free_port
from tests.lanes import lane_of


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test's lane as a marker (tests/lanes.py), so that `-m` picks lanes."""
    for item in items:
        lane = lane_of(item)
        if lane is not None:
            item.add_marker(lane)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator().start()
    try:
        yield emu
    finally:
        emu.stop()


@functools.cache
def shipped_config() -> Config:
    """The shipped app.yaml, read once per test process (a Config is immutable)."""
    return load_config(REPO / "app.yaml")


def sandbox_config(**rollback: object) -> Config:
    """The shipped app.yaml, with health checks that do not sleep (tests wait on nothing).
    The sandbox has no drill history nor acknowledged procedure, so its rollback-readiness
    checklist fails: it does not block production releases here (tests/test_readiness.py
    tests the block)."""
    config = shipped_config()
    settings = config.rollback.model_copy(update={"health_check_interval_s": 0, **rollback})
    readiness = config.readiness.model_copy(update={"block_production": False})
    return config.model_copy(update={"rollback": settings, "readiness": readiness})


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest schema, made once per test process: each sandbox
    starts on a copy of it instead of running every migration again."""
    path = tmp_path_factory.mktemp("schema") / "runback.db"
    Store(f"sqlite:///{path}").close()
    return path


@pytest.fixture
def sandbox(migrated_sqlite: Path, tmp_path: Path) -> Iterator[Sandbox]:
    """The real bot (Bolt over HTTP on waitress) wired to the emulators, as the console uses it."""
    database = tmp_path / "sandbox.db"
    shutil.copyfile(migrated_sqlite, database)
    box = Sandbox(sandbox_config(), retry_deadline_s=1.5, database_url=f"sqlite:///{database}")
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def pg_sandbox() -> Iterator[Sandbox]:
    """The sandbox on a PostgreSQL schema of its own (dropped afterwards), as instances share it."""
    url = postgres_url()
    schema = f"runback_fit_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    box = Sandbox(
        sandbox_config(),
        retry_deadline_s=1.5,
        database_url=f"{url}{separator}options={quote(f'-csearch_path={schema}')}",
    )
    try:
        yield box
    finally:
        box.close()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Emulator, BotProcess]]:
    """`python -m bot serve` (not started yet) on its own SQLite file, wired to the emulators."""
    config_data = yaml.safe_load((REPO / "app.yaml").read_text())
    config_data["rollback"]["health_check_interval_s"] = 0
    config_data.setdefault("readiness", {})["block_production"] = False  # as sandbox_config
    # One instance at a time: a delivery the killed bot had claimed is free again after 2 s,
    # not 20 (nobody else could be delivering it meanwhile).
    config_data["slack"] = {"claim_s": 2}
    config_path = tmp_path / "app.yaml"
    config_path.write_text(yaml.safe_dump(config_data))
    emulator = Emulator(slack_token=TOKEN).start()
    seed(emulator, load_config(config_path))
    port = free_port()
    env = {
        **os.environ,
        **emulator.env(),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'runback.db'}",
        "RUNBACK_CONFIG": str(config_path),
        "RUNBACK_LEASE_S": "1",
    }
    bot = BotProcess(env, port, tmp_path)
    try:
        yield emulator, bot
    finally:
        bot.stop()
        emulator.stop()
