"""Two `python -m bot serve` instances on one PostgreSQL and the same emulators, racing.

    python -m bench.instances            (from the repository root; needs DATABASE_URL_POSTGRES,
                                          e.g. from scripts/postgres.sh; skipped without it)

Each round of the rollback race sends 20 concurrent `/rollback wa-backend` from the on-call
user, split across both instances: the figure is the time from sending them to the one PATCH
Cloud Run receives. Each round of the approval race sends 10 concurrent Approve clicks on one
scheduled rollback, split across both; each round of the alert race delivers one Cloud Monitoring
alert to both at once. Duplicate work (a second PATCH, card, decision or incident) must be 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    BOT_ARGV,
    NEWEST,
    SERVICE,
    BenchError,
    Process,
    SlackSender,
    World,
    fresh_schema,
    make_world,
    ms,
    progress,
    reseed_service,
    wait_until,
    write_config,
)
from bot.sandbox.seed import alert_payload
from bot.sandbox.slack_payloads import button_click, find_button, signed_headers
from bot.store import Store

SENDERS = 20
CLICKS = 10
CLOUD_RUN_OPERATION_S = 2.0  # the winner holds the service while its traffic update applies
TECH_LEAD, DEVELOPER = "U0SOFIA", "U0LUIS"


@contextmanager
def two_instances(world: World, database_url: str) -> Iterator[list[Process]]:
    Store(database_url).close()  # the tables exist before either instance starts
    config = world.tmp / "app.instances.yaml"
    # every round rolls back, never asks first
    write_config(config, world.bench_config, rollback={"repeat_window_minutes": 0})
    processes = []
    try:
        for _ in range(2):
            processes.append(world.launch(BOT_ARGV, config, database_url))
        for process in processes:
            world.first_ack(process)
        yield processes
    finally:
        for process in processes:
            process.stop()


def at_once(jobs: list[Callable[[], Any]]) -> list[Any]:
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], Any]) -> Any:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def rollback_cards(world: World) -> list[dict[str, Any]]:
    return [
        m
        for m in world.emulator.slack.messages("C0INCIDENTS", include_ephemeral=False)
        if m["text"].startswith(f"Rollback of {SERVICE}")
    ]


def final(card: dict[str, Any]) -> bool:
    return card["text"].endswith((": done", ": failed", ": cancelled"))


def wait_quiet(world: World, cards_before: int) -> None:
    """The round's card posted and every card final: the next round finds the service free."""

    def quiet() -> bool:
        cards = rollback_cards(world)
        return len(cards) > cards_before and all(final(c) for c in cards)

    wait_until(quiet, 60, "the rollback to end")


def rollback_race(world: World, processes: list[Process]) -> dict[str, float]:
    reseed_service(world)
    cards = len(rollback_cards(world))
    senders = [SlackSender(world.emulator, world.signing_secret, p.url) for p in processes]
    sent = time.time()
    answers = at_once(
        [
            lambda s=senders[i % 2]: s.command("/rollback", f"{SERVICE} bench race")
            for i in range(SENDERS)
        ]
    )
    if any(a.status_code != 200 for a in answers):
        raise RuntimeError(f"acks: {sorted({a.status_code for a in answers})}")
    wait_until(lambda: world.calls("run.services.patch", sent), 60, "the PATCH")
    to_patch = world.calls("run.services.patch", sent)[0].at - sent
    wait_quiet(world, cards)
    wait_until(lambda: len(busy_answers(world, sent)) >= SENDERS - 1, 60, "the busy answers")
    patches = len(world.calls("run.services.patch", sent))
    new_cards = len(rollback_cards(world)) - cards
    return {
        "to_patch_s": to_patch,
        "duplicates": (patches - 1) + (new_cards - 1),
        "busy_answers": len(busy_answers(world, sent)),
    }


def busy_answers(world: World, since: float) -> list[Any]:
    return [
        c
        for c in world.calls("slack.response_url", since)
        if "is busy" in str((c.body or {}).get("text", ""))
    ]


def approval_race(world: World, processes: list[Process]) -> dict[str, float]:
    reseed_service(world)
    cards = len(rollback_cards(world))
    sender = SlackSender(world.emulator, world.signing_secret, processes[0].url)
    asked = time.time()
    sender.command("/rollback", f"{SERVICE} planned bench", user=DEVELOPER)
    try:
        wait_until(
            lambda: find_button(world.emulator.slack.messages("C0INCIDENTS"), "Approve"),
            30,
            "the Approve button",
        )
    except BenchError as error:
        said = [c.body for c in world.calls("slack.response_url", asked)]
        raise BenchError(f"{error}; the requester was told {said}") from None
    found = find_button(world.emulator.slack.messages("C0INCIDENTS"), "Approve")
    assert found is not None
    message, button, block_id = found

    def click(process: Process) -> int:
        url = world.emulator.slack.new_response_url("C0INCIDENTS", TECH_LEAD, message["ts"])
        body = button_click(message, button, block_id, TECH_LEAD, "sofia", "incidents", url)
        headers = signed_headers(world.signing_secret, body)
        return requests.post(
            process.url, data=body.encode(), headers=headers, timeout=10
        ).status_code

    notes = polite_notes(world)
    sent = time.time()
    statuses = at_once([lambda p=processes[i % 2]: click(p) for i in range(CLICKS)])
    if set(statuses) != {200}:
        raise RuntimeError(f"clicks answered {sorted(set(statuses))}")
    wait_until(lambda: world.calls("run.services.patch", sent), 60, "the approved PATCH")
    to_patch = world.calls("run.services.patch", sent)[0].at - sent
    wait_quiet(world, cards)
    wait_until(lambda: polite_notes(world) - notes >= CLICKS - 1, 60, "the polite notes")
    return {
        "to_patch_s": to_patch,
        "duplicates": len(world.calls("run.services.patch", sent)) - 1,
    }


def alert_race(world: World, processes: list[Process]) -> dict[str, float]:
    """One Cloud Monitoring alert delivered to both instances at once (a retried webhook)."""
    reseed_service(world)
    world.emulator.cloudrun.set_behaviour(NEWEST, healthz_status=503)  # roll back, whatever else
    cards = len(rollback_cards(world))
    body = alert_payload(world.emulator, SERVICE, "open", f"0.bench-{uuid.uuid4().hex[:8]}")

    def deliver(process: Process) -> str:
        answer = requests.post(
            process.alerts_url,
            params={"token": world.alert_token},
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        return str(answer.json().get("status"))

    sent = time.time()
    statuses = at_once([lambda p=p: deliver(p) for p in processes])
    try:
        wait_until(lambda: world.calls("run.services.patch", sent), 60, "the alert's PATCH")
        to_patch = world.calls("run.services.patch", sent)[0].at - sent
        wait_quiet(world, cards)
    finally:
        world.emulator.cloudrun.set_behaviour(NEWEST, healthz_status=200)
    return {
        "to_patch_s": to_patch,
        "created": statuses.count("created"),
        "duplicates": len(world.calls("run.services.patch", sent))
        - 1
        + statuses.count("created")
        - 1,
    }


def polite_notes(world: World) -> int:
    """The "already decided" notes the tech lead has been shown."""
    return sum(
        1
        for m in world.emulator.slack.messages("C0INCIDENTS")
        if m.get("ephemeral_to") == TECH_LEAD and "Nothing more to do." in m["text"]
    )


def measure(world: World, database_url: str, rounds: int) -> dict[str, Any]:
    world.emulator.cloudrun.operation_delay_s = CLOUD_RUN_OPERATION_S
    try:
        with fresh_schema(database_url) as url, two_instances(world, url) as processes:
            rollback_race(world, processes)  # warm-up: imports, clients, connections
            started = time.time()
            races = [rollback_race(world, processes) for _ in range(rounds)]
            approvals = [approval_race(world, processes) for _ in range(rounds)]
            alerts = [alert_race(world, processes) for _ in range(rounds)]
            # every round is over: a straggler's late PATCH would show here
            patches = len(world.calls("run.services.patch", started))
    finally:
        world.emulator.cloudrun.operation_delay_s = 0.0
    result = {
        "senders": SENDERS,
        "clicks": CLICKS,
        "rollback_to_patch_s": statistics.median(r["to_patch_s"] for r in races),
        "rollback_duplicates": sum(r["duplicates"] for r in races),
        "approval_to_patch_s": statistics.median(r["to_patch_s"] for r in approvals),
        "approval_duplicates": sum(r["duplicates"] for r in approvals),
        "alert_to_patch_s": statistics.median(r["to_patch_s"] for r in alerts),
        "alert_duplicates": sum(r["duplicates"] for r in alerts),
        "patches_beyond_one_per_round": patches - 3 * rounds,
        "samples": {"rollback": races, "approval": approvals, "alert": alerts},
    }
    progress(
        f"two instances: {SENDERS} concurrent /rollback -> one PATCH in "
        f"{ms(result['rollback_to_patch_s']):.0f} ms, {CLICKS} Approve clicks -> one PATCH in "
        f"{ms(result['approval_to_patch_s']):.0f} ms, one alert twice -> one PATCH in "
        f"{ms(result['alert_to_patch_s']):.0f} ms; duplicate work "
        f"{duplicate_work(result)}"
    )
    return result


def duplicate_work(result: dict[str, Any]) -> int:
    return max(
        result["rollback_duplicates"] + result["approval_duplicates"] + result["alert_duplicates"],
        result["patches_beyond_one_per_round"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instances", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each race (5)")
    args = parser.parse_args(argv)
    database_url = os.environ.get("DATABASE_URL_POSTGRES", "").strip()
    if not database_url:
        print("\nTwo instances: skipped (set DATABASE_URL_POSTGRES; scripts/postgres.sh)")
        return 0
    with tempfile.TemporaryDirectory(prefix="runback-bench-") as tmp:
        world = make_world(Path(tmp))
        try:
            result = measure(world, database_url, args.rounds)
        finally:
            world.emulator.stop()
    rounds = len(result["samples"]["rollback"])
    print(f"\nTwo instances on one PostgreSQL (median of {rounds} rounds):")
    print(
        f"  {SENDERS} concurrent /rollback -> the one PATCH: "
        f"{ms(result['rollback_to_patch_s']):8.1f} ms   duplicate work: "
        f"{result['rollback_duplicates']}"
    )
    print(
        f"  {CLICKS} concurrent Approve clicks -> the one PATCH: "
        f"{ms(result['approval_to_patch_s']):8.1f} ms   duplicate work: "
        f"{result['approval_duplicates']}"
    )
    print(
        "  one alert delivered to both -> the one PATCH: "
        f"{ms(result['alert_to_patch_s']):8.1f} ms   duplicate work: "
        f"{result['alert_duplicates']}"
    )
    print(
        "  PATCHes beyond one per round, counted at the end: "
        f"{result['patches_beyond_one_per_round']}"
    )
    return 1 if duplicate_work(result) else 0


if __name__ == "__main__":
    sys.exit(main())
