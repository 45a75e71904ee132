"""A core of its own for the bot while its acks are timed.

On Cloud Run the bot has its own vCPU (one by default) and Slack and Google answer from other
machines. On this bench's machine the emulators standing in for them, and the senders standing
in for Slack's users, run beside the bot: a burst of ``/traffic`` made them (2-3 ms of CPU per
command for the emulators, against the bot's 5) take the cores the bot's acks wait for. While
``own_core`` holds, the bot's threads run on the first core only and this process's (the
emulators', and the senders' it starts) on the others; on leaving, all may run anywhere again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid``: a thread it starts later inherits its creator's set (Linux)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, FileNotFoundError):  # a thread that just ended
            continue


@contextmanager
def own_core(pid: int) -> Iterator[bool]:
    """Yields whether the split was made: not on one core, nor where Python cannot set it."""
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir(f"/proc/{pid}/task"):
        yield False
        return
    everywhere = os.sched_getaffinity(0)
    if len(everywhere) < 2:
        yield False
        return
    first = min(everywhere)
    _pin(pid, {first})
    _pin(os.getpid(), everywhere - {first})
    try:
        yield True
    finally:
        _pin(os.getpid(), everywhere)
        if os.path.isdir(f"/proc/{pid}/task"):
            _pin(pid, everywhere)
