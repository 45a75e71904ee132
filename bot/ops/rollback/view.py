"""What a rollback shows: its one live card (updated in place)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bot.config import Action, Role
from bot.ops.cards import OperationCard, approval_view, total_seconds
from bot.ops.context import Deps
from bot.ops.rollback.states import RollbackData
from bot.policy.approvals import who_may_approve
from bot.policy.flags import flag_action
from bot.ports import Message
from bot.store import Operation


def card_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    """Everything the card template needs, as plain data."""
    approval = deps.store.approvals.approval_for(operation.id)
    data = RollbackData.of(operation)
    return {
        "id": operation.id,
        "kind": operation.kind,
        "service": operation.service,
        "state": operation.state,
        "emergency": operation.emergency,
        "automatic": data.automatic,
        "drill": data.drill,
        "requested_by": operation.requested_by,
        "reason": operation.reason,
        "from": data.from_.model_dump(),
        "to": data.to.model_dump(),
        "timings": data.timings,
        "error": data.error.model_dump() if data.error else None,
        "traffic_now": data.traffic_now,
        "uri": data.uri,
        "health": data.health.model_dump() if data.health else None,
        "superseded_by": data.superseded_by,
        "preempted_by": data.preempted_by,
        "preempted_reason": data.preempted_reason,
        "skipped": [s.model_dump() for s in data.skipped],
        "offers": data.offers.model_dump(),
        "total_s": total_seconds(operation),
        "marks": step_marks(data.timings, data.error.step if data.error else None),
        "approval": approval_view(approval) if approval else None,
        "health_path": _health_path(deps, operation),
        "approver": _approver(deps, approval),
        "migration_guard": [g.model_dump() for g in data.migration_guard],
        "flag_role": str(_flag_role(deps, operation.service)),
    }


def _flag_role(deps: Deps, service: str) -> Role:
    """Who may flip a flag of ``service`` (a way out a card may offer)."""
    config = deps.config.service(service)
    environment = config.environment if config else "production"
    return deps.config.approvals.row(flag_action(environment)).requester


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


def _approver(deps: Deps, approval: Any) -> dict[str, Any] | None:
    """Who may approve the request, from the approval matrix (said on the card)."""
    if approval is None:
        return None
    return asdict(who_may_approve(deps.config.approvals, Action(approval.action)))


def _health_path(deps: Deps, operation: Operation) -> str:
    service = deps.config.service(operation.service)
    return service.health_path if service else "/healthz"


def rollback_card(deps: Deps, operation: Operation) -> Message:
    return deps.renderer.message("rollback_card", op=card_view(deps, operation))


CARD = OperationCard(rollback_card)
refresh = CARD.refresh
