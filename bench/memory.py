"""Scenario 5: memory after many slash commands."""

from __future__ import annotations

import time
from typing import Any

from bench.ack import bench_first_traffic, fire, wait_responses
from bench.common import SERVICE, Process, World, progress, rss_kb

MEMORY_MIX = (("/ops", "help"), ("/traffic", SERVICE), ("/ops", "whoami"))


def bench_memory(world: World, process: Process, total: int, threads: int) -> dict[str, Any]:
    sender = world.sender(process)
    result: dict[str, Any] = {"at_start_kb": rss_kb(process.pid)}
    bench_first_traffic(world, sender)  # loads the Google client libraries
    result["after_first_traffic_kb"] = rss_kb(process.pid)
    for round_ in (1, 2):
        commands = [MEMORY_MIX[i % len(MEMORY_MIX)] for i in range(total)]
        delayed = sum(1 for command, text in commands if text != "help")
        since = time.time()
        fire(sender, commands, threads)
        wait_responses(world, delayed, since)
        time.sleep(0.2)  # let the handlers' threads finish after their last response
        result[f"after_{round_ * total}_kb"] = rss_kb(process.pid)
        progress(
            f"memory after {round_ * total} commands: "
            f"{result[f'after_{round_ * total}_kb'] / 1024:.1f} MB"
        )
    result["peak_kb"] = rss_kb(process.pid, "VmHWM")
    result["commands"] = total
    return result
