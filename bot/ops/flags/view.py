"""What a flag flip shows: its one live card (updated in place), and the same state as a new
message when it ends badly."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.ops.cards import OperationCard
from bot.ops.context import Deps
from bot.ops.flags.states import FINAL_STATES, STEPS
from bot.ports import Message
from bot.store import Operation


def flag_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = operation.data or {}
    steps = data.get("steps") or {}
    return {
        "id": operation.id,
        "service": operation.service,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "reason": operation.reason,
        "flag": data.get("flag", ""),
        "env": data.get("env", ""),
        "value": bool(data.get("value")),
        "before": data.get("before"),
        "previous": operation.from_revision,
        "revision": operation.to_revision,
        "steps": [_step(name, steps.get(name)) for name in STEPS],
        "last": (data.get("judgements") or [None])[-1],
        "waiting": data.get("waiting"),  # for Monitoring's next minute: nothing new to judge
        "watch_until": _moment(data.get("watch_until")),
        "observe_minutes": deps.config.thresholds.observe_minutes,
        "thresholds": deps.config.thresholds.model_dump(),
        "outcome": data.get("outcome") or {},
        "traffic_now": data.get("traffic_now"),
        "health_path": _health_path(deps, operation),
        "buttons": _buttons(operation),
        "total_s": _total_seconds(operation),
    }


def _step(name: str, step: dict[str, Any] | None) -> dict[str, Any]:
    step = step or {}
    return {"name": name, "status": step.get("status", "pending"), "s": step.get("s")}


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _health_path(deps: Deps, operation: Operation) -> str:
    service = deps.config.service(operation.service)
    return service.health_path if service else "/health"


def _total_seconds(operation: Operation) -> float | None:
    if operation.finished_at is None:
        return None
    return (operation.finished_at - operation.created_at).total_seconds()


def _buttons(operation: Operation) -> list[str]:
    if operation.state in FINAL_STATES or operation.state in ("rolling_back", "untagging"):
        return []
    return ["roll_back"]


def flag_message(deps: Deps, operation: Operation, alert: bool = False) -> Message:
    return deps.renderer.message("flag_card", f=flag_view(deps, operation), alert=alert)


CARD = OperationCard(flag_message)
refresh = CARD.refresh
