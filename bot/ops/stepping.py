"""The loop every durable workflow runs (releases, flag flips, restores, drills): take the step
of the operation's state until it ends, waits for a person, or waits for its next due time
(``due_at``); at most ``max_steps`` steps a run, since a bug would otherwise spin here (the next
tick carries on from the store)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from bot.ops.context import Deps
from bot.store import Operation

log = logging.getLogger("runback.ops")

Step = Callable[[Deps, Operation], Operation]


def advance(
    deps: Deps,
    operation_id: str,
    steps: Mapping[str, Step],
    *,
    name: str,
    max_steps: int = 50,
    superseded: type[Exception] | None = None,
    wakes_early: Callable[[Deps, Operation], bool] | None = None,
    stop_when_stalled: bool = False,
) -> Operation:
    """Run ``steps[state]`` while the operation is in one of ``steps``' states and due.

    ``superseded``: a step raising it lost a race to a newer write (e.g. an on-call rollback);
    the operation is read again and the loop goes on from what is stored. ``wakes_early``: an
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
        except Exception as error:
            if superseded is None or not isinstance(error, superseded):
                raise
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
