"""The one status message of an operation, posted once and then updated in place."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from bot.config import Action
from bot.ops.context import Deps
from bot.policy.approvals import who_may_approve
from bot.ports import Message
from bot.store import Operation

log = logging.getLogger("runback.cards")


def card_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    """Everything the card template needs, as plain data."""
    approval = deps.store.approval_for(operation.id)
    data = operation.data or {}
    return {
        "id": operation.id,
        "kind": operation.kind,
        "service": operation.service,
        "state": operation.state,
        "emergency": operation.emergency,
        "automatic": bool(data.get("automatic")),
        "requested_by": operation.requested_by,
        "reason": operation.reason,
        "from": data.get("from") or {},
        "to": data.get("to") or {},
        "timings": data.get("timings") or {},
        "error": data.get("error"),
        "traffic_now": data.get("traffic_now"),
        "uri": data.get("uri", ""),
        "health": data.get("health"),
        "superseded_by": data.get("superseded_by", ""),
        "total_s": _total_seconds(operation),
        "marks": step_marks(data.get("timings") or {}, (data.get("error") or {}).get("step")),
        "approval": approval_view(approval) if approval else None,
        "health_path": _health_path(deps, operation),
        "approver": _approver(deps, approval),
    }


ROLLBACK_STEPS = ("shift", "wait", "verify")


def step_marks(timings: dict[str, float], failed_step: str | None) -> dict[str, str]:
    """done / failed / pending for each step of a rollback: a step is done when it, or a later
    one, finished; the step that failed is never shown as done."""
    marks: dict[str, str] = {}
    for index, step in enumerate(ROLLBACK_STEPS):
        if step == failed_step:
            marks[step] = "failed"
        elif any(later in timings for later in ROLLBACK_STEPS[index:]):
            marks[step] = "done"
        else:
            marks[step] = "pending"
    return marks


def approval_view(approval: Any) -> dict[str, Any]:
    return {
        "id": approval.id,
        "status": approval.status,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at,
        "expires_at": approval.expires_at,
        "action": approval.action,
    }


def _approver(deps: Deps, approval: Any) -> dict[str, Any] | None:
    """Who may approve the request, from the approval matrix (said on the card)."""
    if approval is None:
        return None
    return asdict(who_may_approve(deps.config.approvals, Action(approval.action)))


def _health_path(deps: Deps, operation: Operation) -> str:
    service = deps.config.service(operation.service)
    return service.health_path if service else "/healthz"


def _total_seconds(operation: Operation) -> float | None:
    if operation.finished_at is None:
        return None
    return (operation.finished_at - operation.created_at).total_seconds()


def show(deps: Deps, channel: str, ts: str, message: Message, what: str) -> str | None:
    """Post a status message the first time (returns its ts), update it in place afterwards.

    Chat failures are logged, not raised: the truth is in the store, and the next refresh
    repairs the message."""
    try:
        if ts:
            deps.chat.update(channel, ts, message)
            return None
        return deps.chat.post(channel, message)
    except Exception:
        log.exception("could not post or update the message of %s", what)
        return None


def refresh_card(deps: Deps, operation_id: str) -> None:
    operation = deps.store.operation(operation_id)
    if operation is None:
        return
    message = deps.renderer.message("rollback_card", op=card_view(deps, operation))
    posted = show(deps, operation.channel, operation.message_ts, message, operation_id)
    if posted:
        deps.store.update_operation(operation.id, deps.clock.now(), message_ts=posted)
