"""Committing a release's progress: its next state and typed data together (``ReleaseData``),
its timeline, its end."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.release.states import KIND, ReleaseData
from bot.ops.release.view import post_chart, refresh, release_card
from bot.ops.stepping import Record
from bot.store import Operation

log = logging.getLogger("runback.release")


class ReleaseRecord(Record):
    """The release's ``Record``: every write, its own and the shared code's it is handed to
    (the Cloud Run change, standing aside), is the release's data with the changes, validated
    as ``ReleaseData``."""

    def commit(
        self, deps: Deps, operation: Operation, state: str | None = None, **changes: Any
    ) -> Operation:
        """The next state and the release's data with ``changes`` together, compare-and-set,
        then the card (``Record.commit``)."""
        data = ReleaseData.of(operation).changed(**changes)
        return super().commit(deps, operation, state, **data.stored())

    def end(
        self,
        deps: Deps,
        operation: Operation,
        state: str,
        audited: Mapping[str, Any],
        **changes: Any,
    ) -> Operation:
        """The last state with the release's data with ``changes`` (``Record.end``: nothing is
        due any more, the service's lock given back)."""
        data = ReleaseData.of(operation).changed(**changes)
        return super().end(deps, operation, state, audited, **data.stored())


RECORD = ReleaseRecord(KIND, refresh)
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
