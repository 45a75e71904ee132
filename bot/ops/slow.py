"""A Cloud Run operation slower than ``operation_timeout_s`` has not failed: Cloud Run is still
applying it, and it will end done or failed. The workflow keeps following it (the operation's
state is unchanged, so the same step polls again, after a restart too) and the card is only
changed when the operation ends; the wait is recorded in the timeline and the audit trail."""

from __future__ import annotations

from bot.ops.context import BOT_ACTOR, Deps
from bot.ports import CloudRunError, ServiceState
from bot.store import Operation


def not_applied(state: ServiceState) -> CloudRunError:
    """Why a change Cloud Run finished did not leave the traffic asked for: Cloud Run's own
    reason (the service's terminalCondition) when it gives one, else the traffic as it is."""
    if state.failure:
        return CloudRunError("change_failed", state.failure)
    return CloudRunError("traffic_mismatch", str(state.serving()))


def still_applying(deps: Deps, operation: Operation, kind: str, error: CloudRunError) -> Operation:
    now = deps.clock.now()
    deps.store.journal.add_event(
        operation.id, now, "operation_slow", actor=BOT_ACTOR, detail=error.detail
    )
    deps.audit(
        BOT_ACTOR,
        f"{kind}.operation_slow",
        "waiting",
        service=operation.service,
        operation_id=operation.id,
        detail=error.detail,
    )
    return deps.store.operations.operation(operation.id) or operation
