"""Runback performance bench: cold start, ack latency, rollback overhead, the incident alert's
way to a rollback, memory, one release judgement, a whole release at sandbox speed, and a
feature flag flip's own time (command -> PATCH); then the runbook's decision table timed
from the condition and from the alert in sandbox time (bench/decisions.py).

    python -m bench.run            (from the repository root; or: python bench/run.py)

Everything runs locally: the emulators live in this process, each bot is a real
``python -m bot serve`` subprocess talking to them over sockets, and every Slack request is
signed like Slack signs it. The two release phases run the bot in this process instead, in
the console's Sandbox (its own emulators, a clock that `wait` or ``speed`` moves on).
Prints a table of figures with PASS/MISS against the targets and writes them, with the raw
samples, to bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    ack_cpu,
    decisions,
    drill,
    emergency_lane,
    flags,
    instances,
    migrations,
)
from bench.ack import bench_ack_latency, bench_first_traffic, bench_minimal_ack  # noqa: E402
from bench.alerts import bench_alerts  # noqa: E402
from bench.cold_start import bench_cold_start  # noqa: E402
from bench.common import RESULTS, World, make_world, progress  # noqa: E402
from bench.memory import bench_memory  # noqa: E402
from bench.releases import bench_release_judgement, bench_sandbox_release  # noqa: E402
from bench.report import print_table, print_timeline, rows_for  # noqa: E402
from bench.rollbacks import (  # noqa: E402
    bench_rollback_slack_rate_limited,
    bench_rollbacks,
    one_rollback,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cold-runs", type=int, default=5, help="launches of each app (5)")
    parser.add_argument(
        "--requests", type=int, default=400, help="slash commands per ack-latency series (400)"
    )
    parser.add_argument("--threads", type=int, default=20, help="concurrent senders (20)")
    parser.add_argument("--rollbacks", type=int, default=8, help="measured rollbacks (8)")
    parser.add_argument(
        "--alerts", type=int, default=8, help="measured incident alerts, after a warm-up (8)"
    )
    parser.add_argument(
        "--memory-commands", type=int, default=1000, help="slash commands before reading RSS (1000)"
    )
    parser.add_argument(
        "--judgements", type=int, default=20, help="measured release judgements (20)"
    )
    parser.add_argument(
        "--release-speed",
        type=float,
        default=60.0,
        help="sandbox clock speed of the whole release (60: a minute of release per second)",
    )
    parser.add_argument("--flag-flips", type=int, default=8, help="measured flag flips (8)")
    parser.add_argument(
        "--no-timeline",
        action="store_true",
        help="do not print the requests of the median rollback and alert",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="runback-bench-") as tmp:
        world = make_world(Path(tmp))
        try:
            run_phases(world, args, results)
        finally:
            world.emulator.stop()
    results["bench_wall_s"] = time.perf_counter() - started

    rows = rows_for(results) + flags.rows(results)
    print()
    print_table(rows)
    if not args.no_timeline:
        print_timeline(
            "the median rollback (ms after the command was sent)",
            results["rollback"]["median_timeline"],
        )
        print_timeline(
            "the median alert (ms after it was sent)", results["alerts"]["median_timeline"]
        )
    ack_cpu.main([])  # the bot's own CPU per ack beside a minimal Bolt app's
    migrations.main([])  # check-migration throughput (bench/migrations.py)
    instances.main([])  # two instances on one PostgreSQL racing (bench/instances.py)
    drill.main([])  # a rollback drill's time to safe traffic (bench/drill.py)
    decisions.main([])  # the runbook's timeouts, from the condition and the alert
    results["table"] = [
        {"metric": r.metric.strip(), "value": r.value, "target": r.target, "verdict": r.verdict}
        for r in rows
    ]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    misses = sum(1 for r in rows if r.ok is False)
    shown = RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS
    print(
        f"\n{len(rows)} figures, {misses} miss(es), in {results['bench_wall_s']:.0f} s. "
        f"JSON: {shown}"
    )
    return 0


def run_phases(world: World, args: argparse.Namespace, results: dict[str, Any]) -> None:
    progress("1/7 cold start")
    results["cold_start"] = bench_cold_start(world, args.cold_runs)
    progress("2/7 ack latency and 3/7 rollback overhead (one bot, quick health checks)")
    with world.running(config_path=world.bench_config) as (process, _):
        sender = world.sender(process)
        results["first_traffic"] = bench_first_traffic(world, sender)
        results["ack_latency"] = bench_ack_latency(world, process, args.requests, args.threads)
        results["rollback"] = bench_rollbacks(world, sender, args.rollbacks)
        results["rollback_429"] = bench_rollback_slack_rate_limited(world, sender)
    results["ack_floor"] = bench_minimal_ack(world, args.requests, args.threads)
    with world.running(config_path=world.bench_config) as (process, _):
        first = one_rollback(world, world.sender(process))
        results["fresh_bot_rollback"] = {"to_patch_s": first.to_patch_s, "total_s": first.total_s}
    progress("4/7 incident alert -> rollback (a fresh bot, quick health checks)")
    with world.running(config_path=world.bench_config) as (process, _):
        results["alerts"] = bench_alerts(world, process, args.alerts)
    progress("5/7 memory (a fresh bot)")
    with world.running(config_path=world.bench_config) as (process, _):
        results["memory"] = bench_memory(world, process, args.memory_commands, args.threads)
    progress("6/7 release judgement (an in-process Sandbox)")
    results["release_judgement"] = bench_release_judgement(world, args.judgements)
    progress(f"7/7 a whole release in a Sandbox at speed {args.release_speed:g}")
    results["sandbox_release"] = bench_sandbox_release(world, args.release_speed)
    progress("then: the emergency PATCH under 40 concurrent /traffic reads")
    results["emergency_lane"] = emergency_lane.measure(world)
    progress(f"then: {args.flag_flips} feature flag flips, /flag -> PATCH (bench/flags.py)")
    results["flag_flip"] = flags.bench_flag_flips(world, args.flag_flips)


if __name__ == "__main__":
    sys.exit(main())
