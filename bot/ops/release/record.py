"""Committing a release's progress: its next state and data together, its timeline, its end."""

from __future__ import annotations

import logging
from typing import Any

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.release.view import post_chart, refresh, release_view
from bot.ops.stepping import write_step
from bot.store import Operation

log = logging.getLogger("runback.release")


def commit(deps: Deps, operation: Operation, state: str | None = None, **data: Any) -> Operation:
    """Commit the next state and data together (``write_step``: compare-and-set, else
    Superseded), then show the release on its card; returns it as this commit left it."""
    updated = write_step(deps, operation, state, data)
    refresh(deps, operation.id)
    return updated


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
