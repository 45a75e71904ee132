"""A scheduled rollback's approval: the decision and its next state, expiry, yielding."""

from __future__ import annotations

from bot.ops.approvals import claim_decision
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.rollback.record import RECORD, finish
from bot.ops.rollback.states import KIND
from bot.ops.rollback.view import refresh
from bot.store import Move, Operation


def decide(deps: Deps, approval_id: str, user: str, approve: bool) -> Operation:
    """Approve or reject a pending rollback (see claim_decision for who may, and when). The
    decision and the operation's next state are committed together."""
    operation = claim_decision(deps, approval_id, user, approve, "rollback", _decided)
    return _after_decision(deps, operation)


def _decided(operation: Operation, approve: bool) -> Move:
    if approve:
        return Move(operation.id, "awaiting_approval", "approved")
    return Move(operation.id, "awaiting_approval", "rejected", release_lock_of=operation.service)


def _after_decision(deps: Deps, operation: Operation) -> Operation:
    refresh(deps, operation.id)
    return deps.store.operations.operation(operation.id) or operation


def on_decided(deps: Deps, operation: Operation, approve: bool, user: str) -> None:
    """Recovery: a decision recorded by an older bot without its operation's next state."""
    if deps.store.operations.move_operation(_decided(operation, approve), deps.clock.now()):
        _after_decision(deps, operation)


def yield_to(deps: Deps, holder_id: str, emergency_user: str, reason: str = "") -> bool:
    """An on-call engineer must always get to safety: a rollback that holds the service's lock
    but is not moving traffic (waiting for a person, or left by a crashed instance) is
    cancelled, its card naming who pre-empted it and why. False when it is running after all
    (then the service is busy)."""
    operation = deps.store.operations.operation(holder_id)
    if operation is None or operation.kind != KIND:
        return False
    now = deps.clock.now()
    move = Move(operation.id, operation.state, "cancelled", release_lock_of=operation.service)
    if not deps.store.operations.move_operation(move, now):
        return False
    RECORD.merge(deps, operation, preempted_by=emergency_user, preempted_reason=reason)
    approval = deps.store.approvals.approval_for(operation.id)
    if approval is not None:
        deps.store.approvals.decide_approval(approval.id, "cancelled", emergency_user, now)
    deps.store.journal.add_event(operation.id, now, "superseded", actor=emergency_user)
    deps.audit(
        emergency_user,
        "rollback.superseded",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        was=operation.state,
    )
    refresh(deps, operation.id)
    return True


def on_expired(deps: Deps, operation: Operation) -> None:
    """Nobody decided in time: the request ends and the service is free again."""
    finish(deps, operation.id, "expired")
    deps.audit(
        BOT_ACTOR,
        "rollback.expired",
        "expired",
        service=operation.service,
        operation_id=operation.id,
    )
