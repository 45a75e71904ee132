"""Committing a release's progress: its next state and data together, its timeline, its end."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import Superseded
from bot.ops.release.view import post_chart, refresh, release_view
from bot.store import Move, Operation, data_seq

log = logging.getLogger("runback.release")


def commit(deps: Deps, operation: Operation, state: str | None = None, **data: Any) -> Operation:
    """Commit the next state and data together, only if the release is still exactly as read
    (state and data, compare-and-set on the data's sequence number), else Superseded: an
    on-call /rollback made while a step waited for Cloud Run is never overwritten by that
    step's result. Then show it; returns the release as this commit left it."""
    merged = {**operation.data, **data}
    state = state or operation.state
    move = Move(operation.id, operation.state, state, merged, from_seq=data_seq(operation))
    updated = deps.store.advance_operation(move, deps.clock.now())
    if updated is None:
        raise Superseded(operation.id)
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
