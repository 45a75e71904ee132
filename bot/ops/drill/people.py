"""What people do to a drill: an on-call engineer's emergency rollback of the drilled service
(``stand_aside`` before the test revision is sent, ``take_back`` once it may serve)."""

from __future__ import annotations

from bot.ops.context import Deps
from bot.ops.drill.record import commit, end
from bot.ops.drill.states import DRILL_TAG, HOLDING_STATES, DrillData
from bot.ops.errors import UserError
from bot.ops.stepping import on_what_it_is
from bot.store import Operation


def stand_aside(deps: Deps, operation_id: str, user: str, reason: str = "") -> str | None:
    """Before the drill sent its test revision to Cloud Run, the revision serving is the one
    the on-call engineer asked to leave: the drill ends at once (failed, ``stood_aside``),
    keeping the service's lock for the rollback that takes it over, and returns its tag. None
    once the test revision may serve (``take_back``) or the drill no longer holds the service."""
    outcome = {"code": "stood_aside", "by": user, **({"reason": reason[:500]} if reason else {})}

    def act(operation: Operation | None) -> Operation | None:
        if operation is None or operation.state != "deploying" or DrillData.of(operation).blue:
            return None
        return end(deps, operation, False, outcome, keep_lock=True)

    stopped = on_what_it_is(lambda: deps.store.operations.operation(operation_id), act)
    if stopped is None:
        return None
    deps.audit(user, "drill.stood_aside", "ok", service=stopped.service, operation_id=stopped.id)
    return DRILL_TAG


def take_back(deps: Deps, operation_id: str, user: str, reason: str = "") -> Operation:
    """The test revision serves (or Cloud Run is applying it): the drill goes back to the
    revision before it at once with its own rollback, as a release goes back to blue, skipping
    what it had left to check, then ends failed (``stood_aside``). While its deploy is being
    sent, its result is not known yet: the engineer is told to ask again in a moment."""
    outcome = {"code": "stood_aside", "by": user, **({"reason": reason[:500]} if reason else {})}

    def act(operation: Operation | None) -> tuple[Operation, Operation]:
        if operation is None or operation.state not in HOLDING_STATES[1:]:
            holder = deps.store.operations.lock_holder(operation.service) if operation else None
            if operation is not None and operation.state == "deploying":
                raise UserError("drill.error.deploying", service=operation.service)
            raise UserError(
                "error.busy", service=operation.service if operation else "?", holder=holder
            )
        if operation.state == "deploy_applying":  # after the deploy: straight to it
            return operation, commit(deps, operation, outcome=outcome, stop_requested=True)
        return operation, commit(deps, operation, "rolling_back", outcome=outcome)

    was, moved = on_what_it_is(lambda: deps.store.operations.operation(operation_id), act)
    deps.audit(
        user,
        "drill.rollback_requested",
        "ok",
        service=moved.service,
        operation_id=moved.id,
        was=was.state,
    )
    return moved
