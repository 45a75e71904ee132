"""Committing a drill's progress: its next state and typed data together (compare-and-set),
its log, and its end (the drill's record, its last state, the result as a new message)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.drill.states import KIND, DrillData
from bot.ops.drill.view import announce_result, refresh
from bot.ops.stepping import Record
from bot.store import Operation

# The next state and data together, only if the drill is still as read (else Superseded: an
# on-call engineer's rollback that took the drill over is never undone), then the card.
RECORD = Record(KIND, refresh, DrillData)


commit = (
    RECORD.commit
)  # the next state and the data with changes (validated as DrillData), then the card


def log_step(
    operation: Operation, step: str, ok: bool, started: datetime, now: datetime, **facts: Any
) -> list[dict[str, Any]]:
    """The drill's log with one more entry: ``step`` passed or not, and how long it took."""
    entry = {
        "at": now.isoformat(),
        "step": step,
        "ok": ok,
        "s": round((now - started).total_seconds(), 2),
        **facts,
    }
    return [*DrillData.of(operation).log, entry]


def end(
    deps: Deps,
    operation: Operation,
    passed: bool,
    outcome: dict[str, Any],
    keep_lock: bool = False,
) -> Operation:
    """The drill's record, then its last state; ``keep_lock`` for the on-call rollback that
    takes the service over from it."""
    now = deps.clock.now()
    state = "succeeded" if passed else "failed"
    operation = commit(deps, operation, outcome=outcome, due_at=None)
    data = DrillData.of(operation)
    if data.drill_id:  # the record first: a crash before the state reruns this
        deps.store.drills.update_drill(
            data.drill_id,
            outcome="passed" if passed else "failed",
            finished_at=now,
            time_to_safe_s=data.time_to_safe_s,
            detail={
                "log": data.log,
                "outcome": outcome,
                "blue": data.blue,
                "revision": operation.to_revision,
                "image": data.image,
                "rollback_id": data.rollback_id,
            },
        )
    operation = commit(deps, operation, state)
    if not keep_lock:
        deps.store.operations.release_lock(operation.service, operation.id)  # if it still holds it
    deps.audit(
        BOT_ACTOR,
        f"drill.{'passed' if passed else 'failed'}",
        "ok" if passed else "failed",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        time_to_safe_s=data.time_to_safe_s,
        **{k: v for k, v in outcome.items() if k in ("code", "status")},
    )
    deps.store.journal.add_event(operation.id, now, state, actor=BOT_ACTOR, **outcome)
    refresh(deps, operation.id)
    announce_result(deps, operation)
    return operation
