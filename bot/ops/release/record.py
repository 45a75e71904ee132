"""Committing a release's progress: its next state and data together, its timeline, its end."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.release.states import FINAL_STATES
from bot.ops.release.view import post_chart, refresh, release_view
from bot.store import Operation

log = logging.getLogger("runback.release")


def commit(deps: Deps, operation: Operation, state: str | None = None, **data: Any) -> Operation:
    """Commit the next state and data together, then show it."""
    now = deps.clock.now()
    merged = {**operation.data, **data}
    fields: dict[str, Any] = {"data": merged}
    if state is not None:
        fields["state"] = state
        if state in FINAL_STATES:
            fields["finished_at"] = now
    updated = deps.store.update_operation(operation.id, now, **fields)
    refresh(deps, operation.id)
    return updated


def due_in(deps: Deps, seconds: float) -> str:
    return (deps.clock.now() + timedelta(seconds=seconds)).isoformat()


def event(deps: Deps, operation: Operation, kind: str, **data: Any) -> None:
    deps.store.add_event(operation.id, deps.clock.now(), kind, actor=BOT_ACTOR, **data)


def end(deps: Deps, operation: Operation, state: str, outcome: dict[str, Any]) -> Operation:
    operation = commit(deps, operation, state, outcome=outcome, due_at=None)
    deps.store.release_lock(operation.service, operation.id)
    deps.audit(
        BOT_ACTOR,
        f"release.{state}",
        "ok" if state == "succeeded" else state,
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        **{k: v for k, v in outcome.items() if k != "seen"},
    )
    event(deps, operation, state, **outcome)
    if state == "failed":  # a card update notifies nobody: say it again, as a new message
        message = deps.renderer.message("release_card", rel=release_view(deps, operation))
        announce(deps, operation.channel, message)
    post_chart(deps, operation)
    return operation
