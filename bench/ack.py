"""Scenario 2: ack latency of slash commands under concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import (
    MINIMAL_ARGV,
    ROOT,
    SERVICE,
    BenchError,
    Process,
    SlackSender,
    World,
    ms,
    percentile,
    progress,
    wait_until,
)
from bench.cores import own_core


def fire(
    sender: SlackSender, commands: Sequence[tuple[str, str]], threads: int
) -> tuple[list[float], float]:
    """Send ``commands`` from ``threads`` closed-loop workers; (ack latencies, wall seconds).

    A latency runs from sending a signed request to its answer, as Slack's 3 s do. The
    requests are signed here (each with a response_url of the Slack emulator) and sent from a
    process of their own (bench/senders.py)."""
    batch = [sender.signed(command, text) for command, text in commands]
    asked = {
        "url": sender.url,
        "threads": threads,
        "requests": [{"body": r.body.decode(), "headers": r.headers} for r in batch],
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.senders"],
        input=json.dumps(asked),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise BenchError(f"bench.senders failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    if result["errors"]:
        raise BenchError(
            f"{len(result['errors'])} request(s) not acked with 200, e.g. {result['errors'][0]}"
        )
    return result["latencies_s"], result["wall_s"]


def wait_responses(world: World, expected: int, since: float, timeout_s: float = 60.0) -> float:
    """Wait until ``expected`` response_url posts arrived since ``since``; returns the last .at."""
    wait_until(
        lambda: len(world.calls("slack.response_url", since)) >= expected,
        timeout_s,
        f"{expected} delayed responses",
    )
    return max(c.at for c in world.calls("slack.response_url", since))


def bench_first_traffic(world: World, sender: SlackSender) -> dict[str, float]:
    """The first /traffic of a fresh bot: it pays for importing the Google client libraries."""
    since = time.time()
    started = time.perf_counter()
    response = sender.command("/traffic", SERVICE)
    ack = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(f"/traffic answered HTTP {response.status_code}")
    answered = wait_responses(world, 1, since)
    return {"ack_s": ack, "response_s": answered - since}


def bench_ack_latency(world: World, process: Process, total: int, threads: int) -> dict[str, Any]:
    """Each command's acks under ``threads`` senders, twice: with the bot on a core of its own
    (bench/cores.py, as on Cloud Run: the figures held to the target), then on cores shared with
    the emulators and the senders (``shared_*``), on the same bot a few seconds older."""
    sender = world.sender(process)
    result: dict[str, Any] = {"threads": threads, "requests": total}
    for key, command, text in (("ops_help", "/ops", "help"), ("traffic", "/traffic", SERVICE)):
        with own_core(process.popen.pid) as pinned:  # first: on the fresher bot
            entry = ack_series(world, process, sender, (command, text), total, threads)
            if command == "/ops":
                entry["one_sender_p50_s"] = one_sender_p50(sender, command, text)
        shared = ack_series(world, process, sender, (command, text), total, threads)
        entry.update({f"shared_{k}": shared[k] for k in ("p50_s", "p99_s", "throughput_rps")})
        result["own_core"] = pinned
        result[key] = entry
        progress(
            f"ack latency {command} {text}: p50 {ms(entry['p50_s'])} ms, "
            f"p99 {ms(entry['p99_s'])} ms (on cores shared with the emulators: "
            f"{ms(shared['p50_s'])}, {ms(shared['p99_s'])} ms)"
        )
    return result


def ack_series(
    world: World,
    process: Process,
    sender: SlackSender,
    command: tuple[str, str],
    total: int,
    threads: int,
) -> dict[str, Any]:
    """One round to warm up, then ``total`` commands timed; a /traffic's answers awaited."""
    answered = command[0] == "/traffic"
    warm_since = time.time()
    fire(sender, [command] * threads, threads)
    if answered:
        wait_responses(world, threads, warm_since)
    since, cpu = time.time(), process.cpu_s()
    latencies, wall = fire(sender, [command] * total, threads)
    entry: dict[str, Any] = {
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies),
        "throughput_rps": total / wall,
    }
    if answered:
        entry["all_responses_s"] = wait_responses(world, total, since) - since
    time.sleep(0.1)  # the last handlers finish after their last response
    entry["bot_cpu_per_command_s"] = (process.cpu_s() - cpu) / total
    return entry


def one_sender_p50(sender: SlackSender, command: str, text: str, total: int = 100) -> float:
    """The ack's own latency, nothing queued before it: one sender, one command at a time."""
    latencies, _ = fire(sender, [(command, text)] * total, 1)
    return percentile(latencies, 50)


def bench_minimal_ack(world: World, total: int, threads: int) -> dict[str, Any]:
    """The floor: the smallest Bolt app (bench/minimal_bolt.py) under the same load and client,
    so that the bot's ack figures read against what any Bolt app gets on this machine."""
    with world.running(argv=MINIMAL_ARGV) as (process, _):
        sender = world.sender(process)
        help_ = ("/ops", "help")
        with own_core(process.popen.pid):
            entry = ack_series(world, process, sender, help_, total, threads)
            entry["one_sender_p50_s"] = one_sender_p50(sender, *help_)
        shared = ack_series(world, process, sender, help_, total, threads)
        entry["shared_p99_s"] = shared["p99_s"]
    progress(
        f"ack latency, minimal Bolt app: p50 {ms(entry['p50_s'])} ms, p99 {ms(entry['p99_s'])} ms"
    )
    return entry
