"""Shared fixtures: every test talks to the real client libraries over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.sandbox.emulator.server import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator().start()
    try:
        yield emu
    finally:
        emu.stop()
