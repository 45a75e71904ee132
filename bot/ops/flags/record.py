"""Committing a flag flip's progress: its next state and typed data together (``FlagData``),
the timeline (its own, and the open incident's of the service), its end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import Superseded
from bot.ops.flags.states import KIND, FlagData
from bot.ops.flags.view import flag_message, refresh
from bot.ops.stepping import Record, due_in
from bot.store import Operation

__all__ = ["RECORD", "FlagRecord", "Superseded", "commit", "due_in", "end", "event"]


class FlagRecord(Record):
    """The flip's ``Record``: every write, its own and the shared code's it is handed to (the
    Cloud Run change, standing aside), is the flip's data with the changes, validated as
    ``FlagData``."""

    def commit(
        self, deps: Deps, operation: Operation, state: str | None = None, **changes: Any
    ) -> Operation:
        """The next state and the flip's data with ``changes`` together, compare-and-set, then
        the card (``Record.commit``)."""
        data = FlagData.of(operation).changed(**changes)
        return super().commit(deps, operation, state, **data.stored())

    def end(
        self,
        deps: Deps,
        operation: Operation,
        state: str,
        audited: Mapping[str, Any],
        **changes: Any,
    ) -> Operation:
        """The last state with the flip's data with ``changes`` (``Record.end``: nothing is due
        any more, the service's lock given back)."""
        data = FlagData.of(operation).changed(**changes)
        return super().end(deps, operation, state, audited, **data.stored())


RECORD = FlagRecord(KIND, refresh)
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
