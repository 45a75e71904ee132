"""What people do to a running flip: the card's Roll back now, or an on-call engineer's
emergency /rollback of the service."""

from __future__ import annotations

from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.flags.record import Superseded, commit, event
from bot.ops.flags.states import FINAL_STATES
from bot.store import Operation

MAX_TRIES = 5


def roll_back(deps: Deps, operation_id: str, user: str, reason: str = "") -> Operation:
    """Before any traffic moved: stop, and the new revision loses its tag. After: 100% back on
    the previous revision at once. Conditional on the state read, so a step the engine commits
    meanwhile never undoes it (the engine's own commit is dropped instead: see Superseded)."""
    said = {"reason": reason[:500]} if reason else {}
    for _ in range(MAX_TRIES):
        operation = _live(deps, operation_id)
        if _before_traffic(operation):
            state, outcome = "untagging", {"code": "stopped", "by": user, **said}
        else:
            state, outcome = "rolling_back", {"code": "rolled_back_by", "by": user, **said}
        try:
            moved = commit(deps, operation, state, due_at=None, pending=None, outcome=outcome)
        except Superseded:
            continue  # the engine moved it a step on just now: decide again on the new state
        deps.audit(
            user,
            "flag.rollback_requested",
            "ok",
            service=operation.service,
            operation_id=operation.id,
            was=operation.state,
            **said,
        )
        event(deps, moved, "rollback_requested", actor=user, **said)
        return moved
    raise UserError("notice.flag.over", state=_live(deps, operation_id).state)


def _live(deps: Deps, operation_id: str) -> Operation:
    operation = deps.store.operation(operation_id)
    if operation is None or operation.kind != "flag":
        raise UserError("notice.unknown_request")
    pending = (operation.data or {}).get("pending") or {}
    over = operation.state in FINAL_STATES or operation.state in ("rolling_back", "untagging")
    if over or pending.get("purpose") in ("rollback", "untag"):
        raise UserError("notice.flag.over", state=operation.state)
    return operation


def _before_traffic(operation: Operation) -> bool:
    pending = operation.data.get("pending") or {}
    return operation.state in ("deploying", "verifying") or (
        operation.state == "applying" and pending.get("purpose") == "deploy"
    )
