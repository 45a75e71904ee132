"""Committing a flag flip's progress: its next state and typed data together (``FlagData``),
the timeline (its own, and the open incident's of the service), its end."""

from __future__ import annotations

from typing import Any

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import Superseded
from bot.ops.flags.states import KIND, FlagData
from bot.ops.flags.view import flag_message, refresh
from bot.ops.stepping import Record, due_in
from bot.store import Operation

__all__ = ["RECORD", "Superseded", "commit", "due_in", "end", "event"]


RECORD = Record(KIND, refresh, FlagData)
commit = RECORD.commit  # the next state and data together (compare-and-set), then the card


def event(deps: Deps, operation: Operation, kind: str, actor: str = BOT_ACTOR, **data: Any) -> None:
    """On the flip's own timeline, and on every unresolved incident of the service (the
    postmortem reads the incident's timeline)."""
    now = deps.clock.now()
    deps.store.journal.add_event(operation.id, now, kind, actor=actor, **data)
    flip = FlagData.of(operation)
    facts = {
        "flag": flip.flag,
        "value": "on" if flip.value else "off",
        "operation": operation.id,
        **data,
    }
    for record in deps.store.incidents.open_incidents(operation.service):
        deps.store.journal.add_event(record.id, now, f"flag_{kind}", actor=actor, **facts)


def end(deps: Deps, operation: Operation, state: str, outcome: dict[str, Any]) -> Operation:
    """The last state: the lock is given back, the end audited and on the timelines; anything
    but success is also said as a new message (an edited card notifies nobody)."""
    flip = FlagData.of(operation)
    audited = {"flag": flip.flag, "value": flip.value}
    operation = RECORD.end(
        deps, operation, state, {**audited, **outcome}, outcome=outcome, pending=None
    )
    event(deps, operation, state, **{k: v for k, v in outcome.items() if k != "seen"})
    if state != "succeeded":
        announce(deps, operation.channel, flag_message(deps, operation, alert=True))
    return operation
