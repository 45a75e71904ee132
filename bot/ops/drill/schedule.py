"""The drill's schedule (app.yaml ``drill.every_days``), driven by every tick (the in-process
scheduler and ``POST /tasks/tick``): a drill falls due ``every_days`` after the last one began
(for a team that never drilled: at ``drill.start``, or one period after the first tick). A
due drill starts once, however many instances tick: its due slot is a unique key. One overdue
by more than ``grace_hours`` (Runback was down, or the service stayed busy) is announced as
missed, once, and still started.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.drill.request import request_drill
from bot.ops.errors import UserError
from bot.store import Operation

log = logging.getLogger("runback.drill")

COUNTED = ("running", "passed", "failed", "scheduled")  # what resets the clock ("missed" does not)


STARTING_LIMIT_S = 60  # a drill still "starting" after this was left by a crash


def tick(deps: Deps, unfinished: Iterable[Operation]) -> list[str]:
    """Start the scheduled drill when it is due; returns the operation to run, if any.
    ``unfinished``: the operations not ended, as the tick read them."""
    _end_stuck_starts(deps, unfinished)
    every, service = deps.config.drill.every_days, deps.config.drill_service
    if every <= 0 or not service:
        return []
    now = deps.clock.now()
    due = next_due(deps, service, now)
    if now < due:
        return []
    if now > due + timedelta(hours=deps.config.drill.grace_hours):
        _announce_missed(deps, service, due, now)
    try:
        operation = request_drill(deps, service, BOT_ACTOR, "", slot=f"{service}@{due.isoformat()}")
    except UserError as error:
        log.info("scheduled drill of %s not started: %s", service, error.key)
        return []
    return [operation.id]


def next_scheduled(deps: Deps) -> datetime | None:
    """When the scheduled drill falls due; None without a schedule."""
    every, service = deps.config.drill.every_days, deps.config.drill_service
    if every <= 0 or not service:
        return None
    return next_due(deps, service, deps.clock.now())


def _end_stuck_starts(deps: Deps, unfinished: Iterable[Operation]) -> None:
    now = deps.clock.now()
    for operation in unfinished:
        stuck = now - operation.created_at > timedelta(seconds=STARTING_LIMIT_S)
        if operation.kind == "drill" and operation.state == "starting" and stuck:
            deps.store.operations.update_operation(operation.id, now, state="cancelled")
            deps.store.operations.release_lock(operation.service, operation.id)
            log.warning("cancelled drill %s, left starting by a crash", operation.id)


def next_due(deps: Deps, service: str, now: datetime) -> datetime:
    """When the next drill of ``service`` is due."""
    last = deps.store.drills.drills(service, outcomes=COUNTED, limit=1)
    start = deps.config.drill.start
    if not last and start is not None:  # the team chose when its schedule begins
        return start
    if not last:  # the schedule begins now: the first drill is due one period later
        deps.store.drills.create_drill(
            now,
            service=service,
            slot=f"{service}@start",
            trigger="schedule",
            requested_by=BOT_ACTOR,
            outcome="scheduled",
        )
        last = deps.store.drills.drills(service, outcomes=COUNTED, limit=1)
    return last[0].started_at + timedelta(days=deps.config.drill.every_days)


def _announce_missed(deps: Deps, service: str, due: datetime, now: datetime) -> None:
    record = deps.store.drills.create_drill(
        now,
        service=service,
        slot=f"{service}@{due.isoformat()}/missed",
        trigger="schedule",
        requested_by=BOT_ACTOR,
        outcome="missed",
        finished_at=now,
        detail={"due": due.isoformat()},
    )
    if record is None:
        return  # announced already (by this instance or another)
    deps.audit(BOT_ACTOR, "drill.missed", "failed", service=service, due=due.isoformat())
    message = deps.renderer.message("drill_missed", service=service, due=due, now=now)
    announce(deps, deps.config.team_channel, message)
