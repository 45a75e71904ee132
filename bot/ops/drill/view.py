"""What a drill shows: its live card in the team channel, and its result as a new message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.ops.cards import OperationCard, announce, total_seconds
from bot.ops.context import Deps
from bot.ops.drill.states import DrillData
from bot.ports import Message
from bot.store import Operation


def drill_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = DrillData.of(operation)
    return {
        "id": operation.id,
        "service": operation.service,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "trigger": data.trigger,
        "revision": operation.to_revision,
        "blue": data.blue,
        "image": data.image,
        "log": data.log,
        "outcome": data.outcome or {},
        "rollback_id": data.rollback_id,
        "time_to_safe_s": data.time_to_safe_s,
        "finished": operation.finished_at is not None,
        "total_s": total_seconds(operation),
    }


def drill_card(deps: Deps, operation: Operation) -> Message:
    return deps.renderer.message("drill_card", drill=drill_view(deps, operation))


CARD = OperationCard(drill_card)
refresh = CARD.refresh


def announce_result(deps: Deps, operation: Operation) -> None:
    """A card's update notifies nobody: the result is also a new message in the team channel."""
    message = deps.renderer.message("drill_result", drill=drill_view(deps, operation))
    announce(deps, operation.channel, message)


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
