"""Shared fixtures: every test talks to the real client libraries over a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Config, load_config
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.server import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator().start()
    try:
        yield emu
    finally:
        emu.stop()


REPO = Path(__file__).resolve().parents[1]


def sandbox_config(**rollback: object) -> Config:
    """The shipped app.yaml, with health checks that do not sleep (tests wait on nothing)."""
    config = load_config(REPO / "app.yaml")
    settings = config.rollback.model_copy(update={"health_check_interval_s": 0, **rollback})
    return config.model_copy(update={"rollback": settings})


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The real bot (Bolt over HTTP on waitress) wired to the emulators, as the console uses it."""
    box = Sandbox(sandbox_config(), retry_deadline_s=1.5)
    try:
        yield box
    finally:
        box.close()
