"""Scenario 3: Runback's own time in a rollback, command to PATCH to final card."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    CARD_APIS,
    SERVICE,
    BenchError,
    SlackSender,
    World,
    card_text,
    is_final,
    ms,
    progress,
    reseed_service,
    wait_until,
)
from bot.sandbox.emulator.http import Fault


@dataclass
class RollbackRun:
    sent: float
    ack_s: float
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (offset s, api)
    to_patch_s: float = 0.0
    # Cloud Run reads before the PATCH: (api, arrival offset, gap to the bot's next request)
    reads: list[tuple[str, float, float]] = field(default_factory=list)
    done_to_update_s: float = 0.0
    probe_to_final_s: float = 0.0
    total_s: float = 0.0
    outcome: str = ""


def one_rollback(world: World, sender: SlackSender) -> RollbackRun:
    reseed_service(world)
    sent = time.time()
    started = time.perf_counter()
    response = sender.command("/rollback", f"{SERVICE} bench")
    run = RollbackRun(sent=sent, ack_s=time.perf_counter() - started)
    if response.status_code != 200:
        raise BenchError(f"/rollback answered HTTP {response.status_code}")
    wait_until(
        lambda: any(is_final(c) for c in world.calls(since=sent)),
        30,
        "the rollback's final card",
    )
    calls = world.calls(since=sent)
    run.timeline = [(c.at - sent, c.api) for c in calls]
    final = next(c for c in calls if is_final(c))
    run.outcome = card_text(final).rsplit(": ", 1)[-1]
    if run.outcome != "done":
        raise BenchError(f"rollback ended {run.outcome!r}; card: {card_text(final)}")
    patch = next(c for c in calls if c.api == "run.services.patch")
    run.to_patch_s = patch.at - sent
    for call, after in itertools.pairwise(calls):
        if call.at < patch.at and call.api in ("run.services.get", "run.revisions.list"):
            run.reads.append((call.api, call.at - sent, after.at - call.at))
    done = [c for c in calls if c.api == "run.operations.get" and c.at < final.at][-1]
    shifted = next(
        c
        for c in calls
        if c.api in CARD_APIS and c.at > done.at and ("verifying" in card_text(c) or is_final(c))
    )
    run.done_to_update_s = shifted.at - done.at
    probe = [c for c in calls if c.api == "service.healthz" and c.at < final.at][-1]
    run.probe_to_final_s = final.at - probe.at
    run.total_s = final.at - sent
    return run


def bench_rollbacks(world: World, sender: SlackSender, runs: int) -> dict[str, Any]:
    first = one_rollback(world, sender)  # pays for importing google-cloud-logging (audit)
    measured = []
    for index in range(runs):
        measured.append(one_rollback(world, sender))
        progress(f"rollback {index + 1}/{runs}: patch at +{ms(measured[-1].to_patch_s)} ms")
    med = sorted(measured, key=lambda r: r.to_patch_s)[len(measured) // 2]

    def median_of(get: Callable[[RollbackRun], float]) -> float:
        return statistics.median(get(r) for r in measured)

    return {
        "runs": runs,
        "to_patch_s": median_of(lambda r: r.to_patch_s),
        "to_patch_max_s": max(r.to_patch_s for r in measured),
        "done_to_update_s": median_of(lambda r: r.done_to_update_s),
        "done_to_update_max_s": max(r.done_to_update_s for r in measured),
        "probe_to_final_s": median_of(lambda r: r.probe_to_final_s),
        "total_s": median_of(lambda r: r.total_s),
        "ack_s": median_of(lambda r: r.ack_s),
        "reads": [{"api": api, "at_s": at, "to_next_request_s": gap} for api, at, gap in med.reads],
        "median_timeline": [(round(offset * 1000, 1), api) for offset, api in med.timeline],
        "first_rollback": {
            "to_patch_s": first.to_patch_s,
            "total_s": first.total_s,
            "done_to_update_s": first.done_to_update_s,
        },
        "samples": [
            {
                "to_patch_s": r.to_patch_s,
                "done_to_update_s": r.done_to_update_s,
                "total_s": r.total_s,
            }
            for r in measured
        ],
    }


def bench_rollback_slack_rate_limited(world: World, sender: SlackSender) -> dict[str, Any]:
    """Slack answers every card update with 429 (Retry-After 2 s) during a rollback: the PATCH
    and the health verification must not wait for Slack; the card catches up afterwards."""
    reseed_service(world)
    faults = world.emulator.router.faults
    faults.add(Fault("slack.chat.update", 429, message="2", times=None))
    sent = time.time()
    try:
        if sender.command("/rollback", f"{SERVICE} bench").status_code != 200:
            raise BenchError("/rollback was not acknowledged")
        wait_until(lambda: world.calls("service.healthz", sent), 30, "the health check")
        calls = world.calls(since=sent)
    finally:
        faults.clear()
    wait_until(lambda: any(is_final(c) for c in world.calls(since=sent)), 30, "the final card")
    patch = next(c for c in calls if c.api == "run.services.patch")
    probe = next(c for c in calls if c.api == "service.healthz")
    final = next(c for c in world.calls(since=sent) if is_final(c))
    return {
        "to_patch_s": patch.at - sent,
        "to_probe_s": probe.at - sent,
        "to_final_card_s": final.at - sent,
        "updates_refused": sum(1 for c in calls if c.api == "slack.chat.update"),
    }
