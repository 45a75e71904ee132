"""Approval requests shared by every workflow: asking, the first valid click, expiry.

A workflow asks with ``request_approval``; a click is claimed with ``claim_decision`` (the
workflow then applies its own consequences); ``expire_due`` ends what nobody decided in time,
handing each expired operation to its own workflow's ``on_expired``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from bot.config import Action
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.policy.approvals import decide_approval
from bot.store import Operation

OnExpired = Callable[[Deps, Operation], None]


def request_approval(deps: Deps, operation_id: str, action: Action, requested_by: str) -> None:
    """A pending approval for ``action``, expiring after the configured time."""
    now = deps.clock.now()
    ttl = timedelta(minutes=deps.config.approvals.approval_ttl_minutes)
    deps.store.create_approval(
        now,
        operation_id=operation_id,
        action=action.value,
        requested_by=requested_by,
        expires_at=now + ttl,
    )


def claim_decision(deps: Deps, approval_id: str, user: str, approve: bool) -> Operation:
    """Record the first valid Approve/Reject click on a pending request and return its
    operation. Every other click (stale, expired, unauthorized, second) raises UserError and
    changes nothing; the clicker's roles come from their user id, never from the button."""
    store, now = deps.store, deps.clock.now()
    approval = store.approval(approval_id)
    if approval is None:
        raise UserError("notice.unknown_request")
    _check_still_pending(deps, approval_id)
    operation = store.operation(approval.operation_id)
    assert operation is not None
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
        )
    status = "approved" if approve else "rejected"
    if not store.decide_approval(approval_id, status, user, now):
        _check_still_pending(deps, approval_id)
        raise UserError("notice.already_decided", status="pending", by="", at=None)
    store.add_event(operation.id, now, status, actor=user)
    deps.audit(
        user,
        f"{operation.kind}.{status}",
        "ok",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        approval_action=approval.action,
    )
    return operation


def _check_still_pending(deps: Deps, approval_id: str) -> None:
    """A click on a request already decided, or past its deadline, is answered politely. An
    expired request is ended by the next ``expire_due`` (every tick), not by the click."""
    approval = deps.store.approval(approval_id)
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
    for approval in deps.store.expire_approvals(deps.clock.now()):
        operation = deps.store.operation(approval.operation_id)
        if operation is None or operation.state != "awaiting_approval":
            continue
        on_expired[operation.kind](deps, operation)
        ended.append(operation.id)
    return ended
