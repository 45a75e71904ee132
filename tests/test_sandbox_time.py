"""Sandbox time that passes like time: `wait 12m` runs every step that falls due on the way at
its own time, in order, so it does what twelve `wait 1m` do (bot/sandbox/passing.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.sandbox.console import Sandbox
from bot.store import Operation
from tests.conftest import sandbox_config

SERVICE = "wa-backend"
BLUE = "wa-backend-00003"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"


@pytest.fixture
def boxes() -> Iterator[tuple[Sandbox, Sandbox]]:
    """Two sandboxes, each a few seconds past a whole minute: one waits at once, one a minute
    at a time."""
    made = [Sandbox(sandbox_config(), retry_deadline_s=1.5) for _ in range(2)]
    try:
        for box in made:
            box.clock.advance(65 - box.clock.time() % 60)
        yield made[0], made[1]
    finally:
        for box in made:
            box.close()


def release(box: Sandbox) -> Operation:
    with box.runtime.deps.store.session() as session:
        (operation,) = session.scalars(select(Operation).where(Operation.kind == "release"))
        return operation


def serving(box: Sandbox) -> dict[str, int]:
    rows = box.emulator.cloudrun.traffic(SERVICE)
    return {r["revision"]: r["percent"] for r in rows if r["percent"]}


def test_wait_12m_at_once_is_twelve_wait_1m_for_an_observed_release(
    boxes: tuple[Sandbox, Sandbox],
) -> None:
    """Green errs at 3%: observed, then rolled back once Monitoring shows five more minutes of
    it. One judgement at the end of `wait 12m` would only have started the observation."""
    outcomes = []
    for box, waits in zip(boxes, (["wait 12m"], ["wait 1m"] * 12), strict=True):
        box.run_line("set new error_rate=0.03")
        box.run_line("as marta")
        box.run_line(f"/deploy {SERVICE} {IMAGE}")
        for line in waits:
            box.run_line(line)
        operation = release(box)
        verdicts = [j["verdict"] for j in operation.data["judgements"]]
        outcomes.append((operation.state, verdicts, serving(box)))
    at_once, minute_by_minute = outcomes
    assert at_once == minute_by_minute
    state, verdicts, traffic = at_once
    assert state == "rolled_back" and traffic == {BLUE: 100}
    assert verdicts[0] == "observe" and verdicts[-1] == "rollback"


def test_wait_8m_at_once_is_eight_wait_1m_for_an_observed_incident(
    boxes: tuple[Sandbox, Sandbox],
) -> None:
    outcomes = []
    for box, waits in zip(boxes, (["wait 8m"], ["wait 1m"] * 8), strict=True):
        box.run_line(f"set {BLUE} error_rate=0.03")
        box.run_line("wait 5m")
        box.run_line(f"alert {SERVICE}")
        for line in waits:
            box.run_line(line)
        record = box.runtime.deps.store.incidents.incident_by_alert(f"sandbox-{SERVICE}")
        ends = [j.get("window_end", "")[11:16] for j in record.data["judgements"]]
        outcomes.append((record.state, [j["verdict"] for j in record.data["judgements"]], ends))
    at_once, minute_by_minute = outcomes
    assert at_once == minute_by_minute
    assert at_once[0] == "mitigated" and at_once[1][-1] == "observe_expired"
