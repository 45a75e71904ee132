"""What people do to a running flip: the card's Roll back now, or an on-call engineer's
emergency /rollback of the service."""

from __future__ import annotations

from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.flags.record import commit, event
from bot.ops.flags.states import FINAL_STATES
from bot.store import Operation


def roll_back(deps: Deps, operation_id: str, user: str, reason: str = "") -> Operation:
    """Before any traffic moved: stop, and the new revision loses its tag. After: 100% back on
    the previous revision at once."""
    operation = deps.store.operation(operation_id)
    if operation is None or operation.kind != "flag":
        raise UserError("notice.unknown_request")
    if operation.state in FINAL_STATES or operation.state in ("rolling_back", "untagging"):
        raise UserError("notice.flag.over", state=operation.state)
    deps.audit(
        user,
        "flag.rollback_requested",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        reason=reason[:500],
    )
    said = {"reason": reason[:500]} if reason else {}
    event(deps, operation, "rollback_requested", actor=user, **said)
    pending = operation.data.get("pending") or {}
    before_traffic = operation.state in ("deploying", "verifying") or (
        operation.state == "applying" and pending.get("purpose") == "deploy"
    )
    if before_traffic:
        outcome = {"code": "stopped", "by": user, **said}
        return commit(deps, operation, outcome=outcome, stop_requested=True)
    outcome = {"code": "rolled_back_by", "by": user, **said}
    return commit(deps, operation, "rolling_back", due_at=None, pending=None, outcome=outcome)
