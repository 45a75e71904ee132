"""Emergencies go first: the on-call engineer's emergency PATCH, alone and under 40 concurrent
`/traffic` reads from a user with no role, with Cloud Run answering every call 300 ms late.

    python -m bench.emergency_lane            (from the repository root)

The delay is the time from sending `/rollback` to the Cloud Run emulator receiving the PATCH.
Work after the ack used to share two threads: forty reads queued in front of the rollback.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.ack import wait_responses
from bench.common import (
    SERVICE,
    World,
    make_world,
    ms,
    progress,
    reseed_service,
    wait_until,
)
from bot.sandbox.emulator.http import Fault

CLOUD_RUN_APIS = (
    "run.services.get",
    "run.revisions.list",
    "run.services.patch",
    "run.operations.get",
)
CLOUD_RUN_DELAY_MS = 300
READS = 40
NO_ROLE = "U0EVE"


def slow_cloud_run(world: World) -> None:
    for api in CLOUD_RUN_APIS:
        world.emulator.router.faults.add(Fault(api, None, delay_ms=CLOUD_RUN_DELAY_MS, times=None))


def emergency_patch_delay(world: World, sender: Any, reads: int) -> float:
    """Seconds from the on-call `/rollback` to its PATCH, with ``reads`` `/traffic` in flight."""
    reseed_service(world)
    since = time.time()
    acked = threading.Barrier(reads + 1)

    def read() -> None:
        try:
            sender.command("/traffic", SERVICE, user=NO_ROLE)
        finally:
            acked.wait()

    for _ in range(reads):
        threading.Thread(target=read, daemon=True).start()
    acked.wait()  # every read is acked and queued behind nothing but the others
    sent = time.time()
    response = sender.command("/rollback", f"{SERVICE} bench emergency")
    if response.status_code != 200:
        raise RuntimeError(f"/rollback answered HTTP {response.status_code}")
    wait_until(lambda: world.calls("run.services.patch", sent), 60, "the emergency PATCH")
    patch = world.calls("run.services.patch", sent)[0]
    if reads:
        wait_responses(world, reads, since, timeout_s=60)
    wait_until(lambda: _rollback_over(world, sent), 60, "the rollback to end")
    return patch.at - sent


def _rollback_over(world: World, since: float) -> bool:
    for call in world.calls("slack.chat.update", since):
        text = str((call.body or {}).get("text", "")) if isinstance(call.body, dict) else ""
        if text.startswith(f"Rollback of {SERVICE}") and text.endswith((": done", ": failed")):
            return True
    return False


def measure(world: World, runs: int = 3) -> dict[str, Any]:
    """The figures, as bench/run.py stores them (seconds; the median of ``runs`` each)."""
    slow_cloud_run(world)
    try:
        with world.running(config_path=world.bench_config) as (process, _):
            sender = world.sender(process)
            emergency_patch_delay(world, sender, 0)  # warm-up: imports, clients, queries
            alone = [emergency_patch_delay(world, sender, 0) for _ in range(runs)]
            loaded = [emergency_patch_delay(world, sender, READS) for _ in range(runs)]
    finally:
        world.emulator.router.faults.clear()
    result = {
        "cloud_run_delay_ms": CLOUD_RUN_DELAY_MS,
        "concurrent_reads": READS,
        "alone_s": statistics.median(alone),
        "under_reads_s": statistics.median(loaded),
        "samples": {"alone_s": alone, "under_reads_s": loaded},
    }
    progress(
        f"emergency PATCH: {ms(result['alone_s'])} ms alone, "
        f"{ms(result['under_reads_s'])} ms under {READS} /traffic reads"
    )
    return result


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="runback-bench-") as tmp:
        world = make_world(Path(tmp))
        try:
            result = measure(world)
        finally:
            world.emulator.stop()
    print(
        f"Emergency PATCH delay, Cloud Run answering {CLOUD_RUN_DELAY_MS} ms late "
        f"(median of {len(result['samples']['alone_s'])}):"
    )
    print(f"  alone:                         {ms(result['alone_s']):8.1f} ms")
    print(f"  under {READS} concurrent /traffic: {ms(result['under_reads_s']):8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
