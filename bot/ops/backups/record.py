"""Committing a backup's progress: its next state and typed data together (compare-and-set),
its end."""

from __future__ import annotations

from typing import Any

from bot.ops.backups.states import KIND, BackupData
from bot.ops.backups.view import refresh
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.stepping import Record
from bot.store import Operation

RECORD = Record(KIND, refresh, BackupData)


commit = (
    RECORD.commit
)  # the next state and the data with changes (validated as BackupData), then the card


def end(deps: Deps, operation: Operation, state: str, **changes: Any) -> Operation:
    """The last state, with the backup's total time (an on-demand backup holds no lock)."""
    started = operation.created_at
    total = (deps.clock.now() - started).total_seconds()
    deps.store.journal.add_event(operation.id, deps.clock.now(), state, actor=BOT_ACTOR)
    return commit(deps, operation, state, due_at=None, total_s=total, **changes)
