"""Scenario 4: an incident alert's way to the rollback PATCH."""

from __future__ import annotations

import secrets
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.common import (
    NEWEST,
    SERVICE,
    BenchError,
    Process,
    World,
    card_text,
    is_final,
    ms,
    percentile,
    progress,
    reseed_service,
    wait_until,
)
from bot.sandbox.seed import alert_payload

ALERT_MARKS = (
    ("run.services.get", "first Cloud Run read (judgement)"),
    ("monitoring.timeSeries.list", "first Monitoring ListTimeSeries"),
    ("service.healthz", "/healthz probe"),
    ("run.revisions.list", "rollback: list revisions"),
    ("run.services.patch", "traffic PATCH"),
)


@dataclass
class AlertRun:
    incident: str
    sent: float
    answer_s: float  # POST -> its 200 answer (the alert is recorded and its card posted by then)
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (offset s, api)
    marks: dict[str, float] = field(default_factory=dict)  # api -> first arrival offset
    monitoring_calls: int = 0
    to_patch_s: float = 0.0
    total_s: float = 0.0  # -> the postmortem draft, when the bot is quiet again


def one_alert(world: World, process: Process, incident_id: str) -> AlertRun:
    """An open alert for a revision whose /healthz fails ("roll back now" whatever the
    metrics say; the Monitoring queries still run) until the rollback and its postmortem."""
    reseed_service(world)
    world.emulator.cloudrun.set_behaviour(NEWEST, healthz_status=503)
    body = alert_payload(world.emulator, SERVICE, "open", incident_id)
    files = len(world.emulator.slack.files())
    sent = time.time()
    started = time.perf_counter()
    response = requests.post(
        process.alerts_url,
        params={"token": world.alert_token},
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    run = AlertRun(incident=incident_id, sent=sent, answer_s=time.perf_counter() - started)
    if response.status_code != 200 or response.json().get("status") != "created":
        raise BenchError(f"alert answered HTTP {response.status_code}: {response.text[:300]}")
    # done when the rollback card is final and the postmortem draft (posted after it) is up
    wait_until(
        lambda: (
            any(is_final(c) for c in world.calls(since=sent))
            and len(world.emulator.slack.files()) > files
        ),
        30,
        f"the rollback and postmortem of alert {incident_id}",
    )
    time.sleep(0.05)  # the bot records the postmortem after its upload; let it finish
    calls = world.calls(since=sent)
    run.timeline = [(c.at - sent, c.api) for c in calls]
    final = next(c for c in calls if is_final(c))
    if not card_text(final).endswith(": done"):
        raise BenchError(f"the alert's rollback did not end done: {card_text(final)}")
    for api, _ in ALERT_MARKS:
        run.marks[api] = next(c.at - sent for c in calls if c.api == api)
    run.to_patch_s = run.marks["run.services.patch"]
    run.monitoring_calls = sum(
        1 for c in calls if c.api == "monitoring.timeSeries.list" and c.at - sent < run.to_patch_s
    )
    run.total_s = max(c.at for c in calls) - sent
    return run


def bench_alerts(world: World, process: Process, runs: int) -> dict[str, Any]:
    """Alert POST -> traffic PATCH, Cloud Run operations instant. The first alert of the fresh
    bot imports the Google client libraries (Cloud Logging, Cloud Run, Monitoring over gRPC)
    and opens their connections: reported apart, not in the median."""
    tag = secrets.token_hex(3)
    first = one_alert(world, process, f"0.bench-{tag}-warmup")
    progress(f"alert warm-up (fresh bot): patch at +{ms(first.to_patch_s)} ms")
    measured = []
    for index in range(runs):
        measured.append(one_alert(world, process, f"0.bench-{tag}-{index + 1}"))
        progress(f"alert {index + 1}/{runs}: patch at +{ms(measured[-1].to_patch_s)} ms")
    if any(r.monitoring_calls != 2 for r in [first, *measured]):
        counts = [r.monitoring_calls for r in [first, *measured]]
        raise BenchError(f"expected 2 Monitoring calls before each PATCH, saw {counts}")
    to_patch = [r.to_patch_s for r in measured]
    med = sorted(measured, key=lambda r: r.to_patch_s)[len(measured) // 2]
    return {
        "runs": runs,
        "to_patch_s": statistics.median(to_patch),
        "to_patch_p90_s": percentile(to_patch, 90),
        "to_patch_max_s": max(to_patch),
        "answer_s": statistics.median(r.answer_s for r in measured),
        "marks_s": {
            api: statistics.median(r.marks[api] for r in measured) for api, _ in ALERT_MARKS
        },
        "total_s": statistics.median(r.total_s for r in measured),
        "median_timeline": [(round(offset * 1000, 1), api) for offset, api in med.timeline],
        "warmup": {
            "to_patch_s": first.to_patch_s,
            "answer_s": first.answer_s,
            "marks_s": first.marks,
            "total_s": first.total_s,
        },
        "samples": [
            {"answer_s": r.answer_s, "to_patch_s": r.to_patch_s, "marks_s": r.marks}
            for r in measured
        ],
    }
