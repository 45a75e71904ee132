"""Time, passed in: policy code never reads the clock, workflows read it through this."""

from __future__ import annotations

import time
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

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def time(self) -> float:
        elapsed = time.time() - self._started
        return self._started + elapsed * self.speed + self.offset_s

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds / self.speed)

    def advance(self, seconds: float) -> None:
        self.offset_s += max(seconds, 0.0)
