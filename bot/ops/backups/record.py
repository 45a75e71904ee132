"""Committing a backup's progress: its next state and data together, its end."""

from __future__ import annotations

from typing import Any

from bot.ops.backups.states import FINAL_STATES
from bot.ops.backups.view import refresh
from bot.ops.context import BOT_ACTOR, Deps
from bot.store import Operation


def commit(deps: Deps, operation: Operation, state: str | None = None, **data: Any) -> Operation:
    now = deps.clock.now()
    fields: dict[str, Any] = {"data": {**operation.data, **data}}
    if state is not None:
        fields["state"] = state
        if state in FINAL_STATES:
            fields["finished_at"] = now
    updated = deps.store.update_operation(operation.id, now, **fields)
    refresh(deps, operation.id)
    return updated


def end(deps: Deps, operation: Operation, state: str, **data: Any) -> Operation:
    started = operation.created_at
    total = (deps.clock.now() - started).total_seconds()
    deps.store.add_event(operation.id, deps.clock.now(), state, actor=BOT_ACTOR)
    return commit(deps, operation, state, due_at=None, total_s=total, **data)
