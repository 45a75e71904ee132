"""Committing a flag flip's progress: its next state and data together, its steps' times, the
timeline (its own, and the open incident's of the service), its end."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import Superseded
from bot.ops.flags.view import flag_message, refresh
from bot.ops.stepping import due_in, write_step
from bot.store import Operation

__all__ = ["Superseded", "commit", "due_in", "end", "event", "step_ended", "step_started"]


def commit(deps: Deps, operation: Operation, state: str | None = None, **data: Any) -> Operation:
    """Commit the next state and data together (``write_step``: compare-and-set, else
    Superseded), then show the flip on its card; returns it as this commit left it."""
    updated = write_step(deps, operation, state, data)
    refresh(deps, operation.id)
    return updated


def step_started(operation: Operation, step: str, now: datetime) -> dict[str, Any]:
    """The card's steps with ``step`` running since ``now`` (kept if it already runs)."""
    steps = dict(operation.data.get("steps") or {})
    if step not in steps:
        steps[step] = {"status": "running", "started": now.isoformat()}
    return {"steps": steps}


def step_ended(operation: Operation, step: str, now: datetime, status: str) -> dict[str, Any]:
    """The card's steps with ``step`` ended (done or failed) at ``now``, with its duration."""
    steps = dict(operation.data.get("steps") or {})
    started = datetime.fromisoformat(steps.get(step, {}).get("started") or now.isoformat())
    seconds = max((now - started).total_seconds(), 0.0)
    steps[step] = {"status": status, "started": started.isoformat(), "at": now.isoformat()}
    steps[step]["s"] = seconds
    return {"steps": steps}


def event(deps: Deps, operation: Operation, kind: str, actor: str = BOT_ACTOR, **data: Any) -> None:
    """On the flip's own timeline, and on every unresolved incident of the service (the
    postmortem reads the incident's timeline)."""
    now = deps.clock.now()
    deps.store.add_event(operation.id, now, kind, actor=actor, **data)
    facts = {
        "flag": operation.data.get("flag", ""),
        "value": "on" if operation.data.get("value") else "off",
        "operation": operation.id,
        **data,
    }
    for record in deps.store.open_incidents(operation.service):
        deps.store.add_event(record.id, now, f"flag_{kind}", actor=actor, **facts)


def end(deps: Deps, operation: Operation, state: str, outcome: dict[str, Any]) -> Operation:
    """The last state: the lock is given back, the end audited and on the timelines; anything
    but success is also said as a new message (an edited card notifies nobody)."""
    operation = commit(deps, operation, state, outcome=outcome, due_at=None, pending=None)
    deps.store.release_lock(operation.service, operation.id)
    deps.audit(
        BOT_ACTOR,
        f"flag.{state}",
        "ok" if state == "succeeded" else state,
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        flag=operation.data.get("flag", ""),
        value=operation.data.get("value"),
        **outcome,
    )
    event(deps, operation, state, **{k: v for k, v in outcome.items() if k != "seen"})
    if state != "succeeded":
        announce(deps, operation.channel, flag_message(deps, operation, alert=True))
    return operation
