"""Time, passed in: policy code never reads the clock, workflows read it through this."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class SandboxClock(SystemClock):
    """The sandbox's time: real time running ``speed`` times faster, plus an offset that the
    console's ``wait 5m`` moves forward at once. The sandbox's emulators and bot share it, so
    a release's warm-up or an approval's expiry can be reached without waiting in real time."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = max(speed, 0.001)
        self.offset_s = 0.0
        self._started = time.time()
        self._held: float | None = None  # while held: the time, moved only by advance()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def time(self) -> float:
        held = self._held
        return held if held is not None else self._running()

    def _running(self) -> float:
        elapsed = time.time() - self._started
        return self._started + elapsed * self.speed + self.offset_s

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds / self.speed)

    def advance(self, seconds: float) -> None:
        if self._held is not None:
            self._held += max(seconds, 0.0)
        else:
            self.offset_s += max(seconds, 0.0)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Time stands still but for ``advance`` (the console's ``wait`` runs each due step at
        exactly its time), then runs on from where it was left."""
        self._held = self._running()
        try:
            yield
        finally:
            held, self._held = self._held, None
            self.offset_s += held - self._running()
