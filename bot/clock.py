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
    """Real time plus an offset that the console's ``wait 5m`` moves forward at once. The
    sandbox's emulators and bot share it, so a judgement window or an approval's expiry can be
    reached without waiting in real time."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def time(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += max(seconds, 0.0)
