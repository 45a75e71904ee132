"""What people do to a running flip: the card's Roll back now, or an on-call engineer's
emergency /rollback of the service."""

from __future__ import annotations

from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.flags.record import RECORD, commit, event
from bot.ops.flags.states import FINAL_STATES, FLAG_TAG, KIND, FlagData
from bot.ops.stepping import on_what_it_is
from bot.ops.stepping import stand_aside as shared_stand_aside
from bot.store import Operation


def roll_back(deps: Deps, operation_id: str, user: str, reason: str = "") -> Operation:
    """Before any traffic moved: stop, and the new revision loses its tag. After: 100% back on
    the previous revision at once. See ``roll_back_from``; a write the engine made meanwhile
    makes it decide again on what the flip is now."""
    try:
        return on_what_it_is(
            lambda: _live(deps, operation_id),
            lambda live: roll_back_from(deps, live, user, reason),
        )
    except UserError as error:
        if error.key == "notice.moving":
            _live(deps, operation_id)  # over by now: say so
        raise


def roll_back_from(deps: Deps, operation: Operation, user: str, reason: str = "") -> Operation:
    """Decide on the flip as read and commit only if it is still exactly that (state and
    data), else Superseded, changing nothing. The state alone is not enough: a flip read
    ``applying`` its env change is ``applying`` again for its 100% step a moment later, and
    "stop before any traffic moved" would then leave the new revision serving 100%."""
    said = {"reason": reason[:500]} if reason else {}
    if _before_traffic(operation):
        state, outcome = "untagging", {"code": "stopped", "by": user, **said}
    else:
        state, outcome = "rolling_back", {"code": "rolled_back_by", "by": user, **said}
    moved = commit(deps, operation, state, due_at=None, pending=None, outcome=outcome)
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


def stand_aside(deps: Deps, operation_id: str, user: str, reason: str = "") -> str | None:
    """An on-call engineer's emergency rollback while the new revision has no traffic (it is
    being created, checked, or losing its tag): the revision serving 100% is the one they asked
    to leave. The flip ends at once (``cancelled``, keeping the service's lock for the rollback
    that takes it over) and returns its tag, which that rollback removes. None when the new
    revision may have traffic (``roll_back`` takes it back) or the flip is over."""
    return shared_stand_aside(
        deps,
        operation_id,
        user,
        reason,
        record=RECORD,
        tag=FLAG_TAG,
        before_traffic=_no_traffic_yet,
        told=lambda stopped, outcome: event(deps, stopped, "cancelled", actor=user, **outcome),
    )


def _no_traffic_yet(operation: Operation) -> bool:
    return (
        _before_traffic(operation)
        or operation.state == "untagging"
        or (operation.state == "applying" and FlagData.of(operation).purpose == "untag")
    )


def _live(deps: Deps, operation_id: str) -> Operation:
    operation = deps.store.operations.operation(operation_id)
    if operation is None or operation.kind != KIND:
        raise UserError("notice.unknown_request")
    over = operation.state in FINAL_STATES or operation.state in ("rolling_back", "untagging")
    if over or FlagData.of(operation).purpose in ("rollback", "untag"):
        raise UserError("notice.flag.over", state=operation.state)
    return operation


def _before_traffic(operation: Operation) -> bool:
    return operation.state in ("deploying", "verifying") or (
        operation.state == "applying" and FlagData.of(operation).purpose == "deploy"
    )
