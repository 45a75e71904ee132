"""Approve / Reject on a backup's or a restore's card, and the restore card's "Go back"."""

from __future__ import annotations

from bot.ops import backups, restore
from bot.ops.approvals import claim_decision
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.preemption import request_rollback
from bot.ops.rollback import RollbackRequest
from bot.policy.approvals import Steer, may_steer
from bot.store import Operation

WORKFLOWS = {"backup": backups, "restore": restore}


def decide(deps: Deps, approval_id: str, user: str, approve: bool) -> Operation:
    """The first valid click decides (see claim_decision); returns the operation."""
    approval = deps.store.approvals.approval(approval_id)
    operation = deps.store.operations.operation(approval.operation_id) if approval else None
    if operation is None or operation.kind not in WORKFLOWS:
        raise UserError("notice.unknown_request")
    workflow = WORKFLOWS[operation.kind]
    decided = claim_decision(deps, approval_id, user, approve, operation.kind, workflow.decided)
    workflow.refresh(deps, decided.id)
    return deps.store.operations.operation(decided.id) or decided


def go_back(deps: Deps, operation_id: str, user: str, channel: str) -> Operation | None:
    """Back to the revision that used the old database: at once while the restore is being
    judged; after it ended, as a rollback to that revision (by the approval matrix)."""
    operation = deps.store.operations.operation(operation_id)
    if operation is None or operation.kind != "restore" or not operation.from_revision:
        raise UserError("notice.unknown_request")
    if not may_steer(Steer.GO_BACK, deps.roles(user)):
        raise UserError("error.db.go_back_roles")
    if restore.go_back_now(deps, operation, user):
        return deps.store.operations.operation(operation_id)
    if operation.state != "succeeded":
        raise UserError("notice.already_decided", status=operation.state, by="", at=None)
    reason = deps.renderer.text(
        "restore.go_back_reason", id=operation.id, revision=operation.from_revision
    )
    request = RollbackRequest(
        service=operation.service,
        revision=operation.from_revision,
        reason=reason,
        user=user,
        channel=channel,
    )
    return request_rollback(deps, request)
