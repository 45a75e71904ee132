"""Approval requests shared by every workflow: asking, the first valid click, expiry.

A workflow asks with ``request_approval``; a click is claimed with ``claim_decision`` (the
workflow then applies its own consequences); ``expire_due`` ends what nobody decided in time,
handing each expired operation to its own workflow's ``on_expired``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta

from bot.config import Action
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.policy.approvals import decide_approval
from bot.store import Decided, Move, Operation

OnExpired = Callable[[Deps, Operation], None]


def request_approval(deps: Deps, operation_id: str, action: Action, requested_by: str) -> None:
    """A pending approval for ``action``, expiring after the configured time."""
    now = deps.clock.now()
    ttl = timedelta(minutes=deps.config.approvals.approval_ttl_minutes)
    deps.store.approvals.create_approval(
        now,
        operation_id=operation_id,
        action=action.value,
        requested_by=requested_by,
        expires_at=now + ttl,
    )


Transition = Callable[[Operation, bool], Move]  # (operation, approved?) -> its next state


def claim_decision(
    deps: Deps, approval_id: str, user: str, approve: bool, kind: str, transition: Transition
) -> Operation:
    """Record the first valid Approve/Reject click on a pending request together with its
    operation's next state (``transition``, one transaction), and return the operation. Every
    other click (stale, expired, unauthorized, second, or a button of another kind of
    operation) raises UserError and changes nothing; the clicker's roles come from their user
    id, never from the button."""
    store, now = deps.store, deps.clock.now()
    approval = store.approvals.approval(approval_id)
    if approval is None:
        raise UserError("notice.unknown_request")
    operation = store.operations.operation(approval.operation_id)
    assert operation is not None
    if operation.kind != kind:
        _refuse_wrong_kind(deps, user, operation, kind)
    _check_still_pending(deps, approval_id)
    decision = decide_approval(
        deps.config.approvals,
        Action(approval.action),
        user,
        deps.roles(user),
        approval.requested_by,
    )
    if not decision.allowed:
        deps.audit(
            user,
            f"{operation.kind}.approval_refused",
            "refused",
            service=operation.service,
            operation_id=operation.id,
            why=str(decision.refusal),
        )
        raise UserError(
            f"error.approval.{decision.refusal}",
            role=str(decision.required_role),
            kind=operation.kind,
            groups_problem=deps.groups_problem(),
            groups=deps.group_handles(),
        )
    status = "approved" if approve else "rejected"
    move = transition(operation, approve)
    if not store.decide_and_move(approval_id, Decided(status, user), now, move):
        _check_still_pending(deps, approval_id)
        raise UserError("notice.already_decided", status="pending", by="", at=None)
    store.journal.add_event(operation.id, now, status, actor=user)
    deps.audit(
        user,
        f"{operation.kind}.{status}",
        "ok",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        approval_action=approval.action,
    )
    return store.operations.operation(operation.id) or operation


def _refuse_wrong_kind(deps: Deps, user: str, operation: Operation, kind: str) -> None:
    """A button of one kind of operation carrying another's approval id is forged or stale."""
    deps.audit(
        user,
        f"{kind}.approval_refused",
        "refused",
        service=operation.service,
        operation_id=operation.id,
        why="wrong_kind",
        approval_kind=operation.kind,
    )
    raise UserError("notice.wrong_button")


def _check_still_pending(deps: Deps, approval_id: str) -> None:
    """A click on a request already decided, or past its deadline, is answered politely. An
    expired request is ended by the next ``expire_due`` (every tick), not by the click."""
    approval = deps.store.approvals.approval(approval_id)
    assert approval is not None
    if approval.status == "pending" and approval.expires_at <= deps.clock.now():
        raise UserError("notice.already_decided", status="expired", by="", at=approval.expires_at)
    if approval.status != "pending":
        # an expired request says the deadline the card showed, not when a tick expired it
        at = approval.expires_at if approval.status == "expired" else approval.decided_at
        raise UserError(
            "notice.already_decided", status=approval.status, by=approval.decided_by, at=at
        )


def expire_due(deps: Deps, on_expired: Mapping[str, OnExpired]) -> list[str]:
    """Expire every approval past its deadline; each operation still waiting for it is handed
    to its workflow (``on_expired`` by operation kind). Returns the operations handed over."""
    ended = []
    for approval in deps.store.approvals.expire_approvals(deps.clock.now()):
        operation = deps.store.operations.operation(approval.operation_id)
        if operation is None or operation.state != "awaiting_approval":
            continue
        on_expired[operation.kind](deps, operation)
        ended.append(operation.id)
    return ended


OnDecided = Callable[[Deps, Operation, bool, str], None]


def recover_decided(
    deps: Deps,
    on_decided: Mapping[str, OnDecided],
    on_expired: Mapping[str, OnExpired],
    unfinished: Iterable[Operation],
) -> list[str]:
    """Operations still waiting for a person (among ``unfinished``, as the caller read them)
    whose request was already decided, expired or cancelled (left so by a crash in an older
    bot): finish the decision or end them, so that nothing stays locked until someone edits the
    database. Returns the operations moved."""
    moved = []
    for operation in unfinished:
        if operation.state != "awaiting_approval" or operation.kind not in on_decided:
            continue
        approval = deps.store.approvals.approval_for(operation.id)
        if approval is None or approval.status == "pending":
            continue
        if approval.status in ("approved", "rejected"):
            approve = approval.status == "approved"
            on_decided[operation.kind](deps, operation, approve, approval.decided_by)
        else:
            on_expired[operation.kind](deps, operation)
        moved.append(operation.id)
    return moved
