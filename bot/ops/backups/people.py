"""What people do to an on-demand backup: approve or reject it (when the matrix asks)."""

from __future__ import annotations

from bot.ops.backups.view import refresh
from bot.ops.context import BOT_ACTOR, Deps
from bot.store import Move, Operation


def decided(operation: Operation, approve: bool) -> Move:
    return Move(operation.id, "awaiting_approval", "starting" if approve else "rejected")


def on_decided(deps: Deps, operation: Operation, approve: bool, user: str) -> None:
    if deps.store.operations.move_operation(decided(operation, approve), deps.clock.now()):
        refresh(deps, operation.id)


def on_expired(deps: Deps, operation: Operation) -> None:
    move = Move(operation.id, "awaiting_approval", "expired")
    if deps.store.operations.move_operation(move, deps.clock.now()):
        deps.audit(BOT_ACTOR, "backup.expired", "expired", service=operation.service)
        refresh(deps, operation.id)
