"""What people do to a running release: the card's Roll back, Pause and Resume."""

from __future__ import annotations

from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.release.canary import proceed_now
from bot.ops.release.record import RECORD, commit, event
from bot.ops.release.states import FINAL_STATES, GREEN_TAG, KIND, ReleaseData
from bot.ops.stepping import due_in, on_what_it_is
from bot.ops.stepping import stand_aside as shared_stand_aside
from bot.store import Operation


def roll_back(deps: Deps, operation_id: str, user: str, reason: str = "") -> Operation:
    """The card's Roll back (or an on-call engineer's /rollback, with its reason): 100% to
    blue at once."""
    said = {"reason": reason} if reason else {}

    def act(operation: Operation) -> Operation:
        purpose = ReleaseData.of(operation).purpose  # "" once Cloud Run applied it
        if operation.state in ("backing_up", "deploying", "smoke") or (
            operation.state == "applying" and purpose == "deploy"
        ):
            outcome = {"code": "stopped", "by": user, **said}
            return commit(deps, operation, outcome=outcome, stop_requested=True)
        outcome = {"code": "rolled_back_by", "by": user, **said}
        return commit(deps, operation, "rolling_back", due_at=None, outcome=outcome)

    moved = on_what_it_is(lambda: _live(deps, operation_id), act)
    deps.audit(
        user,
        "release.rollback_requested",
        "ok",
        service=moved.service,
        operation_id=moved.id,
        reason=reason,
    )
    return moved


def stand_aside(deps: Deps, operation_id: str, user: str, reason: str = "") -> str | None:
    """An on-call engineer's emergency rollback while green has no traffic yet (the backup,
    the deploy, the smoke test, the migration's approval): blue serves 100%, and it is blue
    they asked to leave. The release ends at once (``cancelled``, keeping the service's lock for
    the rollback that takes it over) and returns green's tag, which that rollback removes. None
    when green may have traffic (``roll_back`` takes it back to blue) or the release is over."""
    return shared_stand_aside(
        deps,
        operation_id,
        user,
        reason,
        record=RECORD,
        tag=GREEN_TAG,
        before_traffic=_before_traffic,
        told=lambda stopped, outcome: event(deps, stopped, "cancelled", **outcome),
    )


def _before_traffic(operation: Operation) -> bool:
    """Green has had no traffic, and no step of the release gives it any before its next
    write (which this state's compare-and-set then refuses)."""
    release = ReleaseData.of(operation)
    if operation.state == "awaiting_approval":
        return release.awaiting == "migration"
    return operation.state in ("backing_up", "deploying", "smoke") or (
        operation.state == "applying" and release.purpose in ("deploy", "untag")
    )


def pause(deps: Deps, operation_id: str, user: str) -> Operation:
    return on_what_it_is(lambda: _live(deps, operation_id), lambda op: _pause(deps, op, user))


def _pause(deps: Deps, operation: Operation, user: str) -> Operation:
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
    return on_what_it_is(lambda: _live(deps, operation_id), lambda op: _resume(deps, op, user))


def _resume(deps: Deps, operation: Operation, user: str) -> Operation:
    if operation.state not in ("paused", "needs_human"):
        raise UserError("notice.release.not_paused", state=operation.state)
    deps.audit(user, "release.resumed", "ok", service=operation.service, operation_id=operation.id)
    if operation.state == "needs_human":  # a person judged the inconclusive step: proceed
        operation = commit(deps, operation, inconclusive_since=None, proceeded_by=user)
        return proceed_now(deps, operation)
    release = ReleaseData.of(operation)
    back_to = release.paused_from or "judging"
    expected = release.expected
    if release.pause_reason == "out_of_band":
        back_to = "judging"
        expected = release.seen  # accept the traffic as the person left it
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
    operation = deps.store.operations.operation(operation_id)
    if operation is None or operation.kind != KIND:
        raise UserError("notice.unknown_request")
    if operation.state in FINAL_STATES or operation.state == "rolling_back":
        raise UserError("notice.release.over", state=operation.state)
    return operation
