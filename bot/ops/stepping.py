"""The loop every durable workflow runs (releases, flag flips, restores, drills): take the step
of the operation's state until it ends, waits for a person, or waits for its next due time
(``due_at``); at most ``max_steps`` steps a run, since a bug would otherwise spin here (the next
tick carries on from the store)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from bot.ops.context import Deps
from bot.ops.errors import Superseded
from bot.store import Move, Operation, data_seq

log = logging.getLogger("runback.ops")

Step = Callable[[Deps, Operation], Operation]


def advance(
    deps: Deps,
    operation_id: str,
    steps: Mapping[str, Step],
    *,
    name: str,
    max_steps: int = 50,
    wakes_early: Callable[[Deps, Operation], bool] | None = None,
    stop_when_stalled: bool = False,
) -> Operation:
    """Run ``steps[state]`` while the operation is in one of ``steps``' states and due.

    A step raising Superseded lost a race to a newer write (e.g. an on-call rollback): the
    operation is read again and the loop goes on from what is stored. ``wakes_early``: an
    operation waiting for its due time that should run now anyway (what it waits for ended).
    ``stop_when_stalled``: a step that changed nothing (Cloud Run still applying) ends this run
    and the next tick looks again, rather than waiting here again at once."""
    operation = deps.store.operation(operation_id)
    assert operation is not None
    for _ in range(max_steps):
        if operation.state not in steps or _waiting(deps, operation, wakes_early):
            return operation
        before = (operation.state, dict(operation.data))
        try:
            operation = steps[operation.state](deps, operation)
        except Superseded:
            operation = deps.store.operation(operation_id) or operation
            continue
        if stop_when_stalled and (operation.state, operation.data) == before:
            return operation
    log.error("%s %s did not settle in %d steps", name, operation_id, max_steps)
    return operation


def _waiting(
    deps: Deps, operation: Operation, wakes_early: Callable[[Deps, Operation], bool] | None
) -> bool:
    due = operation.data.get("due_at")
    if not due or datetime.fromisoformat(due) <= deps.clock.now():
        return False
    return not (wakes_early and wakes_early(deps, operation))


def write_step(
    deps: Deps, operation: Operation, state: str | None, data: dict[str, Any]
) -> Operation:
    """Commit the next state and data together, only if the operation is still exactly as read
    (state and data: compare-and-set on the data's sequence number), else Superseded: an
    on-call /rollback made while a step waited for Cloud Run is never overwritten by that
    step's result. Returns the operation as this write left it, so that the step's next write
    is conditional on it too."""
    merged = {**operation.data, **data}
    next_state = state or operation.state
    move = Move(operation.id, operation.state, next_state, merged, from_seq=data_seq(operation))
    updated = deps.store.advance_operation(move, deps.clock.now())
    if updated is None:
        raise Superseded(operation.id)
    return updated


def ensure_current(deps: Deps, operation: Operation) -> None:
    """Superseded unless the operation is still exactly as read (state and data): a step that
    would send a change again (a stale etag's retry) sends nothing over a newer decision."""
    stored = deps.store.operation(operation.id)
    if stored is None or stored.state != operation.state or data_seq(stored) != data_seq(operation):
        raise Superseded(operation.id)


def due_in(deps: Deps, seconds: float) -> str:
    """When a timed state is due: ``seconds`` from now, as stored (``due_at``)."""
    return (deps.clock.now() + timedelta(seconds=seconds)).isoformat()
