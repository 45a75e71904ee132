"""Scenario: a feature flag flip's own time, `/flag SERVICE NAME on` to its PATCH at Cloud Run.

A real ``python -m bot serve`` against the emulators. Each run reseeds the service with its
sample flags, sends ``/flag wa-backend NEW_CHECKOUT on`` as a senior developer and times:
- command -> the env-change PATCH arriving at the emulator (Runback's own time: authorize, read
  the service and its revisions, record the flip, send the PATCH);
- command -> the 100% PATCH (adds the Cloud Run operation and the checks on the tag URL).
Then an on-call `/rollback` takes the flip back (the watch would hold the service 5 minutes),
and the next run starts once the flip's card says so.

    python -m bench.flags [--runs 8]     (also one phase of python -m bench.run)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CARD_APIS,
    ON_CALL,
    SERVICE,
    BenchError,
    SlackSender,
    World,
    card_text,
    make_world,
    ms,
    progress,
    wait_until,
)
from bench.report import Row
from bot.sandbox.seed import SAMPLE_FLAGS, SAMPLE_REVISIONS

SENIOR = "U0MARTA"  # may flip a production flag (app.yaml)
PATCH = "run.services.patch"
TARGET_TO_PATCH_S = 0.15  # Runback's own share before Cloud Run is asked, as for a rollback


def reseed_with_flags(world: World) -> None:
    service = world.config.service(SERVICE)
    assert service is not None
    revisions = [
        {
            "name": f"{SERVICE}-{number}",
            "image": f"us-docker.pkg.dev/{service.project}/apps/{SERVICE}:{version}",
            "age_s": age,
            "env": {"APP_ENV": service.environment, **SAMPLE_FLAGS[number]},
        }
        for number, version, age in SAMPLE_REVISIONS
    ]
    world.emulator.cloudrun.seed_service(
        service.project, service.region, SERVICE, revisions, {revisions[-1]["name"]: 100}
    )


def _flag_card(call: Any, ending: str) -> bool:
    text = card_text(call)
    return call.api in CARD_APIS and text.startswith("Feature flag") and text.endswith(ending)


def one_flip(world: World, sender: SlackSender) -> dict[str, float]:
    reseed_with_flags(world)
    sent = time.time()
    started = time.perf_counter()
    response = sender.command("/flag", f"{SERVICE} NEW_CHECKOUT on bench", user=SENIOR)
    ack_s = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(f"/flag answered HTTP {response.status_code}")
    wait_until(lambda: len(world.calls(PATCH, since=sent)) >= 2, 30, "the flip's 100% PATCH")
    deploy, shift = world.calls(PATCH, since=sent)[:2]
    if "template" not in (deploy.body or {}):
        raise BenchError("the flip's first PATCH did not change the template")
    take_back(world, sender)
    return {"ack_s": ack_s, "to_patch_s": deploy.at - sent, "to_shift_s": shift.at - sent}


def take_back(world: World, sender: SlackSender) -> None:
    """An on-call `/rollback` of the service; the flip's card must end "rolled back". A reply
    to the on-call engineer alone (a refusal) or a card left in another state is said."""
    back, replied = time.time(), len(_replies(world))
    answer = sender.command("/rollback", f"{SERVICE} bench over")  # on call, in #incidents
    if answer.status_code != 200:
        raise BenchError(f"/rollback answered HTTP {answer.status_code}: {answer.text[:200]}")

    def taken_back() -> bool:
        return any(_flag_card(c, ": rolled back") for c in world.calls(since=back))

    try:
        wait_until(lambda: taken_back() or len(_replies(world)) > replied, 30, "the flip back")
    except BenchError:
        cards = [card_text(c) for c in world.calls(since=back) if _flag_card(c, "")]
        raise BenchError(f"the flip was not taken back in 30 s; its card: {cards[-1:]}") from None
    if not taken_back():
        raise BenchError(f"/rollback was refused: {_replies(world)[-1][:300]}")


def _replies(world: World) -> list[str]:
    """What Runback told the on-call engineer alone (response_url, ephemeral)."""
    return [
        str(m.get("text", ""))
        for m in world.emulator.slack.messages(include_ephemeral=True)
        if m.get("ephemeral_to") == ON_CALL
    ]


def bench_flag_flips(world: World, runs: int) -> dict[str, Any]:
    with world.running(config_path=world.bench_config) as (process, _):
        sender = world.sender(process)
        one_flip(world, sender)  # warm-up: the first flip pays for imports
        samples = [one_flip(world, sender) for _ in range(runs)]
    to_patch = sorted(s["to_patch_s"] for s in samples)
    to_shift = sorted(s["to_shift_s"] for s in samples)
    return {
        "runs": runs,
        "to_patch_median_s": statistics.median(to_patch),
        "to_patch_max_s": to_patch[-1],
        "to_shift_median_s": statistics.median(to_shift),
        "ack_median_s": statistics.median(s["ack_s"] for s in samples),
        "samples": samples,
    }


def rows(results: dict[str, Any]) -> list[Row]:
    flips = results.get("flag_flip")
    if not flips:
        return []
    median = flips["to_patch_median_s"]
    return [
        Row(
            f"flag flip: /flag -> env PATCH at Cloud Run (median of {flips['runs']})",
            f"{ms(median)} ms",
            f"< {ms(TARGET_TO_PATCH_S):g} ms",
            median < TARGET_TO_PATCH_S,
        ),
        Row("  /flag -> env PATCH (max)", f"{ms(flips['to_patch_max_s'])} ms"),
        Row(
            "  /flag -> 100% PATCH, tag URL checked (median)",
            f"{ms(flips['to_shift_median_s'])} ms",
        ),
        Row("  /flag ack (median)", f"{ms(flips['ack_median_s'])} ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flags", description=__doc__)
    parser.add_argument("--runs", type=int, default=8, help="measured flips (8)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runback-bench-") as tmp:
        world = make_world(Path(tmp))
        try:
            progress(f"flag flips ({args.runs}, after a warm-up)")
            results = {"flag_flip": bench_flag_flips(world, args.runs)}
        finally:
            world.emulator.stop()
    for row in rows(results):
        print(f"{row.metric:<60} {row.value:>12} {row.target:>12} {row.verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
