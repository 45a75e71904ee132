"""Shared fixtures: every test talks to the real client libraries over a real socket."""

from __future__ import annotations

import functools
import gc
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Config, load_config
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.server import Emulator
from bot.store import Store
from tests.db import postgres_schema
from tests.helpers import REPO, BotProcess, bot_config, bot_on_emulators
from tests.lanes import lane_of


def pytest_configure(config: pytest.Config) -> None:
    """Bytecode caches are written even where the environment says not to
    (PYTHONDONTWRITEBYTECODE, common in containers): the suite starts hundreds of Python
    processes (its workers, `python -m bot`, the sandbox CLI), and without the caches each
    compiles Runback and the rewritten tests from source again, about a third of its start."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    gc.set_threshold(10_000, 10, 10)  # see pytest_collection_finish


def pytest_collection_finish(session: pytest.Session) -> None:
    """Each worker hosts the bot and its emulators, allocating fast: with CPython's default
    thresholds the collector ran ~1,500 times over tests/test_release.py and took 8% of its CPU.
    What collection imported (libraries, Runback, the tests) is frozen out of every later
    collection, and the youngest generation is collected every 10,000 allocations, not 700:
    half the collector's time there, and the suite is CPU-bound on two cores. Cycles are still
    collected, only less often."""
    gc.collect()
    gc.freeze()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``pytest -n auto``: two workers per core. A third of the suite's time is spent waiting
    on real time (processes starting, killed and restarted, Cloud SQL operations, leases
    running out), so one worker per core leaves the cores idle that long.
    RUNBACK_TEST_WORKERS overrides it."""
    chosen = os.environ.get("RUNBACK_TEST_WORKERS", "")
    return int(chosen) if chosen.isdigit() else 2 * (os.cpu_count() or 1)


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


# How long the console waits for the bot to stay quiet after each line and each step of a
# `wait` (app.yaml's sandbox.settle_s, 50 ms): 5 ms here. Every activity is tracked (handlers
# from before their ack, background work, operations, the courier's deliveries), so the margin
# only covers hand-overs; at 50 ms it was over a quarter of the flow lane's time.
TEST_SETTLE_S = 0.005
# Cloud SQL operations are polled every 30 s of sandbox time, not 10 (app.yaml): a restore
# (5 min creating the clone, 10 restoring) is 30 polls instead of 90, each a step of `wait`
# with its tick, card update and queries. The same code runs; restore tests took a third less.
TEST_CLOUD_SQL_POLL_S = 30


def sandbox_config(**rollback: object) -> Config:
    """The shipped app.yaml, with health checks that do not sleep (tests wait on nothing), a
    console that waits TEST_SETTLE_S for quiet and Cloud SQL polled every TEST_CLOUD_SQL_POLL_S.
    The sandbox has no drill history nor acknowledged procedure, so its rollback-readiness
    checklist fails: it does not block production releases here (tests/test_readiness.py tests
    the block)."""
    config = shipped_config()
    settings = config.rollback.model_copy(update={"health_check_interval_s": 0, **rollback})
    readiness = config.readiness.model_copy(update={"block_production": False})
    sandbox = config.sandbox.model_copy(update={"settle_s": TEST_SETTLE_S})
    backups = config.backups.model_copy(update={"poll_interval_s": TEST_CLOUD_SQL_POLL_S})
    return config.model_copy(
        update={
            "rollback": settings,
            "readiness": readiness,
            "sandbox": sandbox,
            "backups": backups,
        }
    )


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
    with postgres_schema("runback_fit") as database_url:
        box = Sandbox(sandbox_config(), retry_deadline_s=1.5, database_url=database_url)
        try:
            yield box
        finally:
            box.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Emulator, BotProcess]]:
    """`python -m bot serve` (not started yet) on its own SQLite file, wired to the emulators."""
    # One instance at a time: a delivery the killed bot had claimed is free again after 2 s,
    # not 20 (nobody else could be delivering it meanwhile).
    config_path = bot_config(tmp_path, slack={"claim_s": 2})
    database_url = f"sqlite:///{tmp_path / 'runback.db'}"
    with bot_on_emulators(
        BotProcess, tmp_path, database_url, config_path, RUNBACK_LEASE_S="1"
    ) as world:
        yield world
