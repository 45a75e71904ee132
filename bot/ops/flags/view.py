"""What a flag flip shows: its one live card (updated in place), and the same state as a new
message when it ends badly."""

from __future__ import annotations

from typing import Any

from bot.ops.cards import OperationCard, total_seconds
from bot.ops.context import Deps
from bot.ops.flags.states import FINAL_STATES, STEPS, FlagData, StepMark
from bot.ops.operation_data import moment
from bot.ports import Message
from bot.store import Operation


def flag_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = FlagData.of(operation)
    return {
        "id": operation.id,
        "service": operation.service,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "reason": operation.reason,
        "flag": data.flag,
        "env": data.env,
        "value": data.value,
        "before": data.before.model_dump() if data.before else None,
        "previous": operation.from_revision,
        "revision": operation.to_revision,
        "steps": [_step(name, data.steps.get(name)) for name in STEPS],
        "last": data.judgements[-1] if data.judgements else None,
        # for Monitoring's next minute: nothing new to judge
        "waiting": data.waiting.model_dump() if data.waiting else None,
        "watch_until": moment(data.watch_until),
        "observe_minutes": deps.config.thresholds.observe_minutes,
        "thresholds": deps.config.thresholds.model_dump(),
        "outcome": data.outcome or {},
        "traffic_now": data.traffic_now,
        "health_path": _health_path(deps, operation),
        "buttons": _buttons(operation),
        "total_s": total_seconds(operation),
    }


def _step(name: str, step: StepMark | None) -> dict[str, Any]:
    step = step or StepMark()
    return {"name": name, "status": step.status, "s": step.s}


def _health_path(deps: Deps, operation: Operation) -> str:
    service = deps.config.service(operation.service)
    return service.health_path if service else "/health"


def _buttons(operation: Operation) -> list[str]:
    if operation.state in FINAL_STATES or operation.state in ("rolling_back", "untagging"):
        return []
    return ["roll_back"]


def flag_message(deps: Deps, operation: Operation, alert: bool = False) -> Message:
    return deps.renderer.message("flag_card", f=flag_view(deps, operation), alert=alert)


CARD = OperationCard(flag_message)
refresh = CARD.refresh
