"""The benchmarks run on today's code: ``python -m bench.run`` broke once without a test
noticing (the release judgement phase read a release's data by its version-1 names)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import make_world
from bench.cores import own_core
from bench.releases import bench_release_judgement


def test_the_release_judgement_bench_reads_a_release_by_its_type(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    try:
        figures = bench_release_judgement(world, runs=2)  # a release_sandbox: the flow lane
    finally:
        world.emulator.stop()
    assert figures["runs"] == 2 and len(figures["samples_s"]) == 2
    assert figures["exact"], figures["calls"]  # Monitoring asked no more than a judgement needs
    assert figures["engine"], "the engine's own judgements at 10% and 50% were seen"


def test_own_core_gives_the_bot_one_core_and_everything_back_after() -> None:
    """While the acks are timed, every thread of the bot runs on one core and this process's
    (the emulators', the senders') on the others; after, all may run anywhere again."""
    everywhere = os.sched_getaffinity(0)
    if len(everywhere) < 2:
        pytest.skip("one core: nothing to split")
    threads = (
        "import threading, time\n"
        "for _ in range(3):\n"
        "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    bot = subprocess.Popen([sys.executable, "-c", threads], stdout=subprocess.PIPE, text=True)
    try:
        assert bot.stdout is not None and bot.stdout.readline().strip() == "ready"
        with own_core(bot.pid) as split:
            assert split
            assert cores_of(bot.pid) == {frozenset({min(everywhere)})}
            assert cores_of(os.getpid()) == {frozenset(everywhere - {min(everywhere)})}
        assert cores_of(bot.pid) == cores_of(os.getpid()) == {frozenset(everywhere)}
    finally:
        bot.kill()
        bot.wait()


def cores_of(pid: int) -> set[frozenset[int]]:
    """The distinct core sets of a process's threads (four threads here: the main one and 3)."""
    tasks = os.listdir(f"/proc/{pid}/task")
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in tasks}
