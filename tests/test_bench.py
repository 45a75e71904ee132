"""The benchmarks run on today's code: ``python -m bench.run`` broke once without a test
noticing (the release judgement phase read a release's data by its version-1 names)."""

from __future__ import annotations

from pathlib import Path

from bench.common import make_world
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
