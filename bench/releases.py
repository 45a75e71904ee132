"""Scenarios 6 and 7: one release judgement, and a whole release in a Sandbox at speed."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench.alerts import MONITORING_CALLS
from bench.common import SERVICE, BenchError, World, ms, percentile, progress, wait_until
from bot.config import Config
from bot.ops.metrics_window import WAITING_RECHECK_S
from bot.ops.release.states import ReleaseData
from bot.sandbox.emulator.http import RecordedCall
from bot.sandbox.slack_payloads import find_button

RELEASE_IMAGE = f"us-docker.pkg.dev/runback-sandbox/apps/{SERVICE}:9.9.9"


MONITORING = "monitoring.timeSeries.list"


HEALTHZ = "service.healthz"


RELEASE_FINAL = ("succeeded", "rolled_back", "failed", "cancelled")


SHORT = {MONITORING: "Monitoring", HEALTHZ: "/healthz"}


APPROVE = "Approve 100%"  # the release card's button for a tech lead


ENGINE_TICK_S = 1.0  # Sandbox calls engine.start(), whose ticker runs every 1 s of real time


@contextmanager
def release_sandbox(config: Config, speed: float = 1.0, scheduler: bool = True) -> Iterator[Any]:
    """A Sandbox on app.yaml with health checks that do not sleep, closed afterwards.
    ``scheduler=False``: no background ticker, only `wait` lines move due work on."""
    from bot.sandbox.console import Sandbox

    rollback = config.rollback.model_copy(update={"health_check_interval_s": 0})
    readiness = config.readiness.model_copy(update={"block_production": False})  # never drilled
    settings = config.model_copy(update={"rollback": rollback, "readiness": readiness})
    box = Sandbox(settings, speed=speed, scheduler=scheduler)
    try:
        yield box
    finally:
        box.close()


def start_release(box: Any) -> str:
    """`/deploy` as marta (a senior developer); the id of the release it started."""
    box.run_line("as marta")
    output = box.run_line(f"/deploy {SERVICE} {RELEASE_IMAGE}")
    store = box.runtime.deps.store
    ids = [o.id for o in store.operations.unfinished_operations() if o.kind == "release"]
    if len(ids) != 1:
        raise BenchError("/deploy started no release:\n" + "\n".join(output))
    return ids[0]


def calls_between(box: Any, since: float) -> list[RecordedCall]:
    return [c for c in box.emulator.router.calls.list() if c.at >= since]


@dataclass
class JudgementRun:
    wall_s: float
    monitoring: int
    probes: int
    requests: int  # every emulator request in the meantime (the judgement's, nothing else)
    marks: list[tuple[str, float]]  # (api, arrival after the call began, s)
    verdict: str


def one_judgement(box: Any, operation: Any) -> JudgementRun:
    """Call ``release.judging.judge_green`` on the live operation, as its judging step does; what
    it sent is read from the emulator's request log."""
    from bot.ops import release as release_ops

    since = time.time()
    started = time.perf_counter()
    judgement = release_ops.judging.judge_green(box.runtime.deps, operation)
    wall = time.perf_counter() - started
    calls = calls_between(box, since)
    return JudgementRun(
        wall_s=wall,
        monitoring=sum(1 for c in calls if c.api == MONITORING),
        probes=sum(1 for c in calls if c.api == HEALTHZ),
        requests=len(calls),
        marks=[(c.api, c.at - since) for c in calls],
        verdict=str(judgement.verdict),
    )


def engine_judgements(box: Any, operation_id: str) -> list[dict[str, Any]]:
    """`wait 15s` until the release asks for 100%; each wait that made exactly one judgement
    (the engine's own, at 10% then 50%) gives its Monitoring and /healthz requests. (A check
    that finds no new minute in Monitoring judges nothing and looks again 15 s later: one wait
    holds at most one check.)"""
    store = box.runtime.deps.store
    seen: list[dict[str, Any]] = []
    for _ in range(64):  # Monitoring shows each minute ~3 minutes late
        operation = store.operations.operation(operation_id)
        if operation.state != "judging":
            break
        before = len(operation.data["judgements"])
        since = time.time()
        box.run_line(f"wait {WAITING_RECHECK_S:g}s")
        calls = calls_between(box, since)
        judgements = store.operations.operation(operation_id).data["judgements"]
        if len(judgements) - before != 1:
            continue
        monitoring = [c.at for c in calls if c.api == MONITORING]
        probes = [c.at for c in calls if c.api == HEALTHZ]
        seen.append(
            {
                "percent": judgements[-1]["percent"],
                "verdict": judgements[-1]["verdict"],
                "monitoring": len(monitoring),
                "probes": len(probes),
                "monitoring_to_probe_s": probes[-1] - monitoring[0]
                if monitoring and probes
                else None,
            }
        )
    state = store.operations.operation(operation_id).state
    if state != "awaiting_approval":
        raise BenchError(f"the release did not reach awaiting_approval but {state}")
    return seen


def bench_release_judgement(world: World, runs: int) -> dict[str, Any]:
    """One judgement of green: 3 Monitoring ListTimeSeries (newest visible point, request
    count, P95) + 1 health probe."""
    # no background ticker: nothing but the timed call runs while it is timed
    with release_sandbox(world.config, scheduler=False) as box:
        operation_id = start_release(box)
        # past the warm-up, half an interval before the engine's first judgement falls due
        release = world.config.release
        box.run_line(f"wait {release.warmup_s + release.judge_interval_s / 2:g}s")
        operation = box.runtime.deps.store.operations.operation(operation_id)
        data = ReleaseData.of(operation)
        percent = data.percents[data.step]
        if operation.state != "judging" or percent != 10:
            raise BenchError(f"expected the release judging at 10%: {operation.state} {percent}%")
        first = one_judgement(box, operation)  # creates the Monitoring client (gRPC channel)
        measured = [one_judgement(box, operation) for _ in range(runs)]
        progress(
            f"release judgement: median {ms(statistics.median(r.wall_s for r in measured))} ms, "
            f"{measured[0].monitoring} Monitoring + {measured[0].probes} probe"
        )
        engine = engine_judgements(box, operation_id)
    counts = [(r.monitoring, r.probes) for r in [first, *measured]]
    counts += [(e["monitoring"], e["probes"]) for e in engine]
    walls = [r.wall_s for r in measured]
    marks: dict[str, list[float]] = {}
    for run in measured:
        for index, (api, at) in enumerate(run.marks):
            marks.setdefault(f"{index + 1}. {api}", []).append(at)
    return {
        "runs": runs,
        "wall_s": statistics.median(walls),
        "wall_p90_s": percentile(walls, 90),
        "wall_max_s": max(walls),
        "first_wall_s": first.wall_s,
        "marks_s": {label: statistics.median(ats) for label, ats in marks.items()},
        "calls": sorted({f"{m} Monitoring + {p} probe" for m, p in counts}),
        # before Monitoring shows any point of the step, the first call is the only one
        "exact": all(c in ((MONITORING_CALLS, 1), (1, 1)) for c in counts),
        "requests": sorted({r.requests for r in [first, *measured]}),
        "verdicts": sorted({r.verdict for r in measured}),
        "engine": engine,
        "samples_s": walls,
    }


def configured_waits_s(config: Config, steps: Sequence[int]) -> float:
    """Sandbox seconds a release must sit out when every judgement says proceed: warm-up and
    one judge interval per canary step; at 100%, judgements every interval until warm-up +
    validation have passed."""
    release = config.release
    at_full = release.judge_interval_s * max(
        1, math.ceil(release.validation_s / release.judge_interval_s)
    )
    return sum(
        release.warmup_s + (at_full if percent == 100 else release.judge_interval_s)
        for percent in steps
    )


def poll_state(store: Any, operation_id: str, wanted: Sequence[str], timeout_s: float) -> str:
    """Poll the store every 0.1 s of real time (the sandbox's own clock runs on meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = store.operations.operation(operation_id).state
        if state in wanted:
            return state
        if state in RELEASE_FINAL:
            raise BenchError(f"the release ended {state}, waiting for {' or '.join(wanted)}")
        if time.monotonic() > deadline:
            raise BenchError(f"the release stayed {state} for {timeout_s:g}s")
        time.sleep(0.1)


def bursts(calls: Sequence[RecordedCall], gap_s: float = 0.2) -> list[float]:
    """Spans (first -> last request) of the bot's bursts of requests. Work before a burst's
    first request or after its last (SQLite, rendering) is not seen: a lower bound."""
    spans: list[float] = []
    start = previous = None
    for call in calls:
        if previous is None or call.at - previous > gap_s:
            if start is not None and previous is not None:
                spans.append(previous - start)
            start = call.at
        previous = call.at
    if start is not None and previous is not None:
        spans.append(previous - start)
    return spans


def bench_sandbox_release(world: World, speed: float) -> dict[str, Any]:
    """`/deploy` -> 10% -> 50% -> Approve 100% (luis, a tech lead) -> validation -> succeeded,
    in a Sandbox whose clock runs ``speed`` times faster, waiting in real time (no `wait`).

    The bot's overhead is not measured inside it (its code is not patched): it is estimated as
    real time beyond the configured waits / speed, split into the click, the bot's request
    bursts (a lower bound of its busy time) and the rest, mostly due times caught only at the
    engine's next 1 s tick."""
    with release_sandbox(world.config, speed) as box:
        store = box.runtime.deps.store
        since, sandbox_started = time.time(), box.clock.time()
        operation_id = start_release(box)
        limit = configured_waits_s(
            world.config, ReleaseData.of(store.operations.operation(operation_id)).percents
        )
        timeout = 3 * limit / speed + 30
        poll_state(store, operation_id, ("awaiting_approval",), timeout)
        # the state is committed just before the card with the button is updated
        wait_until(
            lambda: find_button(box.emulator.slack.messages(), APPROVE) is not None,
            10,
            f"the {APPROVE} button",
            poll_s=0.01,
        )
        asked = time.time()
        box.run_line("as luis")
        box.run_line(f"click {APPROVE}")
        approved = time.time()
        state = poll_state(store, operation_id, RELEASE_FINAL, timeout)
        done, sandbox_done = time.time(), box.clock.time()
        if state != "succeeded":
            raise BenchError(f"the release ended {state}")
        box.runtime.engine.wait_idle(timeout_s=10)  # the release chart, posted after the end
        operation = store.operations.operation(operation_id)
        calls = calls_between(box, since)
    waits = limit / speed
    total = done - since
    approval = approved - asked
    overhead = total - waits
    busy = sum(bursts([c for c in calls if c.at < asked or approved <= c.at <= done]))
    late = late_by_s(world.config, operation.data)
    progress(
        f"sandbox release at speed {speed:g}: {total:.1f} s real, "
        f"{sandbox_done - sandbox_started:.0f} s sandbox (waits {limit:.0f} s)"
    )
    return {
        "speed": speed,
        "total_s": total,
        "sandbox_s": sandbox_done - sandbox_started,
        "configured_waits_s": limit,
        "waits_real_s": waits,
        "overhead_s": overhead,
        "approval_s": approval,
        "busy_s": busy,
        "rest_s": overhead - approval - busy,
        "tick_s": ENGINE_TICK_S,
        "judgements": [
            {"percent": j["percent"], "verdict": j["verdict"], "late_s": lateness}
            for j, lateness in zip(operation.data["judgements"], late, strict=True)
        ],
        "late_median_s": statistics.median(late),
        "calls": {
            api: sum(1 for c in calls if c.api == api)
            for api in ("run.services.patch", MONITORING, HEALTHZ, "service.metrics")
        },
        "requests": len(calls),
        "timeline": [(round((c.at - since) * 1000, 1), c.api) for c in calls],
    }


def late_by_s(config: Config, data: dict[str, Any]) -> list[float]:
    """Sandbox seconds each judgement came after it fell due (warm-up + interval after its
    shift, or an interval after the judgement before it at the same step)."""
    release = config.release
    shifted = {h["percent"]: datetime.fromisoformat(h["at"]).timestamp() for h in data["history"]}
    previous: dict[int, float] = {}
    late = []
    for judgement in data["judgements"]:
        percent, at = judgement["percent"], datetime.fromisoformat(judgement["at"]).timestamp()
        if percent in previous:
            due = previous[percent] + release.judge_interval_s
        else:
            due = shifted[percent] + release.warmup_s + release.judge_interval_s
        late.append(at - due)
        previous[percent] = at
    return late
