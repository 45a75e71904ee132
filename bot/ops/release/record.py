"""Committing a release's progress: its next state and typed data together (``ReleaseData``),
its timeline, its end."""

from __future__ import annotations

import logging
from typing import Any

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.release.states import KIND, ReleaseData
from bot.ops.release.view import post_chart, refresh, release_card
from bot.ops.stepping import Record
from bot.store import Operation

log = logging.getLogger("runback.release")


RECORD = Record(KIND, refresh, ReleaseData)
commit = RECORD.commit  # the next state and data together (compare-and-set), then the card


def event(deps: Deps, operation: Operation, kind: str, **data: Any) -> None:
    deps.store.journal.add_event(operation.id, deps.clock.now(), kind, actor=BOT_ACTOR, **data)


def end(deps: Deps, operation: Operation, state: str, outcome: dict[str, Any]) -> Operation:
    audited = {k: v for k, v in outcome.items() if k != "seen"}
    operation = RECORD.end(deps, operation, state, audited, outcome=outcome)
    event(deps, operation, state, **outcome)
    if state == "failed":  # a card update notifies nobody: say it again, as a new message
        announce(deps, operation.channel, release_card(deps, operation))
    post_chart(deps, operation)
    return operation
