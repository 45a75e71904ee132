"""Committing a restore's progress: its next state and typed data together (``RestoreData``;
compare-and-set, so an on-call engineer's write is never overwritten by a step that read the
restore before it), the marks of its steps, its ends."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.restore.states import KIND, RestoreData
from bot.ops.restore.view import STEP_NAMES, refresh
from bot.ops.stepping import Record, step_ended, step_started
from bot.ports import CloudSqlError, SecretsError
from bot.store import Operation

RECORD = Record(KIND, refresh, RestoreData)
commit = RECORD.commit  # the next state and data together (compare-and-set), then the card


write = RECORD.write  # the next state and data together, without the card (a person's act)


def begin(deps: Deps, operation: Operation, step: str) -> Operation:
    if step in RestoreData.of(operation).steps:
        return operation
    return commit(deps, operation, **step_started(operation, step, deps.clock.now()))


def again(deps: Deps, operation: Operation, step: str) -> Operation:
    """A step done before that must be done once more (a rebuilt revision)."""
    steps = {k: v for k, v in RestoreData.of(operation).steps.items() if k != step}
    return begin(deps, commit(deps, operation, steps=steps), step)


def done(deps: Deps, operation: Operation, step: str, **note: Any) -> Operation:
    return mark(deps, operation, step, "done", **note)


def mark(deps: Deps, operation: Operation, step: str, status: str, **note: Any) -> Operation:
    """``step`` ended: ``done`` or ``failed``, with its words and yes/no facts (``note``)."""
    return commit(deps, operation, **step_ended(operation, step, deps.clock.now(), status, **note))


def due(deps: Deps, seconds: float | None = None) -> str:
    wait = deps.config.backups.poll_interval_s if seconds is None else seconds
    return (deps.clock.now() + timedelta(seconds=wait)).isoformat()


def later(deps: Deps, operation: Operation, step: str, **changes: Any) -> Operation:
    """Not done yet: look again at the next poll, unless the restore has taken too long."""
    data = RestoreData.of(operation)
    first = data.steps[STEP_NAMES[0]].started  # the clone's create, begun once approved
    started = datetime.fromisoformat(first) if first else deps.clock.now()
    if (deps.clock.now() - started).total_seconds() > deps.config.backups.restore_timeout_s:
        if data.shifted_at:
            return back(deps, operation, step, "timeout")
        return fail(deps, operation, step, "timeout")
    return commit(deps, operation, due_at=due(deps), **changes)


def back(deps: Deps, operation: Operation, step: str, why: str) -> Operation:
    """Traffic may be on the clone's revision and must not stay there: go back."""
    operation = mark(deps, operation, step, "failed", note=why)
    return commit(deps, operation, "going_back", due_at=None, outcome={"step": step, "why": why})


def fail(deps: Deps, operation: Operation, step: str, why: str) -> Operation:
    """A step failed before any traffic moved: the service is as it was."""
    operation = mark(deps, operation, step, "failed", note=why)
    return end(deps, operation, "failed", outcome={"step": step, "why": why})


def end(deps: Deps, operation: Operation, state: str, **changes: Any) -> Operation:
    outcome = changes.get("outcome") or {}
    audited = {
        "clone": RestoreData.of(operation).clone,
        **{k: v for k, v in outcome.items() if isinstance(v, str)},
    }
    operation = RECORD.end(deps, operation, state, audited, waiting_for=None, **changes)
    deps.store.journal.add_event(operation.id, deps.clock.now(), state, actor=BOT_ACTOR)
    return operation


def why(error: CloudSqlError | SecretsError) -> str:
    """``reason (detail)``: the reason says what to fix (``permission_denied``...)."""
    return f"{error.reason} ({error.detail})" if error.detail else error.reason


def audit_run(deps: Deps, operation: Operation, what: str, op: str, revision: str) -> None:
    deps.audit(
        BOT_ACTOR,
        f"cloudrun.restore_{what}",
        "ok",
        service=operation.service,
        revision=revision,
        operation_id=operation.id,
        cloud_operation=op,
    )
