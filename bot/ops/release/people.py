"""What people do to a running release: the card's Roll back, Pause and Resume."""

from __future__ import annotations

from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.release.canary import proceed_now
from bot.ops.release.record import commit, due_in
from bot.ops.release.states import FINAL_STATES
from bot.store import Operation


def roll_back(deps: Deps, operation_id: str, user: str, reason: str = "") -> Operation:
    """The card's Roll back (or an on-call engineer's /rollback, with its reason): 100% to
    blue at once."""
    operation = _live(deps, operation_id)
    deps.audit(
        user,
        "release.rollback_requested",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        reason=reason,
    )
    said = {"reason": reason} if reason else {}
    if operation.state in ("backing_up", "deploying", "smoke") or (
        operation.state == "applying" and operation.data["pending"]["purpose"] == "deploy"
    ):
        outcome = {"code": "stopped", "by": user, **said}
        return commit(deps, operation, outcome=outcome, stop_requested=True)
    outcome = {"code": "rolled_back_by", "by": user, **said}
    return commit(deps, operation, "rolling_back", due_at=None, outcome=outcome)


def pause(deps: Deps, operation_id: str, user: str) -> Operation:
    operation = _live(deps, operation_id)
    if operation.state not in ("judging", "shifting", "needs_human"):
        raise UserError("notice.release.cannot_pause", state=operation.state)
    deps.audit(user, "release.paused", "ok", service=operation.service, operation_id=operation.id)
    return commit(
        deps,
        operation,
        "paused",
        paused_from=operation.state,
        due_at=None,
        pause_reason="by",
        paused_by=user,
    )


def resume(deps: Deps, operation_id: str, user: str) -> Operation:
    operation = _live(deps, operation_id)
    if operation.state not in ("paused", "needs_human"):
        raise UserError("notice.release.not_paused", state=operation.state)
    deps.audit(user, "release.resumed", "ok", service=operation.service, operation_id=operation.id)
    if operation.state == "needs_human":  # a person judged the inconclusive step: proceed
        operation = commit(deps, operation, inconclusive_since=None, proceeded_by=user)
        return proceed_now(deps, operation)
    back_to = operation.data.get("paused_from") or "judging"
    if operation.data.get("pause_reason") == "out_of_band":
        back_to = "judging"
    expected = operation.data.get("expected")
    if operation.data.get("pause_reason") == "out_of_band":
        expected = operation.data.get("seen")  # accept the traffic as the person left it
    return commit(
        deps,
        operation,
        back_to,
        paused_from=None,
        pause_reason=None,
        expected=expected,
        due_at=due_in(deps, deps.config.release.judge_interval_s),
    )


def _live(deps: Deps, operation_id: str) -> Operation:
    operation = deps.store.operation(operation_id)
    if operation is None or operation.kind != "release":
        raise UserError("notice.unknown_request")
    if operation.state in FINAL_STATES or operation.state == "rolling_back":
        raise UserError("notice.release.over", state=operation.state)
    return operation
