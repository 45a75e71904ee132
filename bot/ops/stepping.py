"""The mechanics every durable workflow shares (rollbacks, releases, flag flips, backups,
restores, drills), each called with the workflow's own names:

- ``advance``: the one step loop. It takes the step of the operation's state until it ends,
  waits for a person, or waits for its next due time (``due_at``); at most ``max_steps`` steps a
  run, since a bug would otherwise spin here (the next tick carries on from the store);
- ``write_step``: the one step write, compare-and-set, and ``Record``: a workflow's commit (that
  write, then its card) and its end;
- ``step_started`` / ``step_ended``: the marks of the steps a card shows with their times;
- ``on_what_it_is``: a person's act, decided again on what the operation is now when a step
  wrote it in between; ``stand_aside``: a release or flip ending at once for an on-call
  engineer's emergency rollback, before its new revision has any traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import Superseded, UserError
from bot.ops.operation_data import OperationData
from bot.store import Move, Operation, data_seq

log = logging.getLogger("runback.ops")

Step = Callable[[Deps, Operation], Operation]


class Refresh(Protocol):
    """Show the operation (by id) on its card as it is now; ``written``: as the caller's own
    write left it (bot/ops/cards.py ``OperationCard.refresh``)."""

    def __call__(self, deps: Deps, operation_id: str, written: Operation | None = None) -> None: ...


Read = TypeVar("Read")
Done = TypeVar("Done")

# A person's act loses only to a write the engine made between its read and its write: the
# engine writes a few times per step, each step waiting on Cloud Run or a probe in between.
MAX_TRIES = 20


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
    operation = deps.store.operations.operation(operation_id)
    assert operation is not None
    for _ in range(max_steps):
        if operation.state not in steps or _waiting(deps, operation, wakes_early):
            return operation
        before = (operation.state, dict(operation.data))
        try:
            operation = steps[operation.state](deps, operation)
        except Superseded:
            operation = deps.store.operations.operation(operation_id) or operation
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
    deps: Deps,
    operation: Operation,
    state: str | None,
    data: dict[str, Any],
    release_lock: bool = False,
    columns: Mapping[str, str] | None = None,
) -> Operation:
    """Commit the next state and data together, only if the operation is still exactly as read
    (state and data: compare-and-set on the data's sequence number), else Superseded: an
    on-call /rollback made while a step waited for Cloud Run is never overwritten by that
    step's result. ``release_lock``: the operation gives its service's lock back in the same
    transaction; ``columns``: the operation's own columns the step sets (its revisions, the
    Cloud Run operation it sent), in the same write. Returns the operation as this write left
    it, so that the step's next write is conditional on it too."""
    merged = {**operation.data, **data}
    next_state = state or operation.state
    move = Move(
        operation.id,
        operation.state,
        next_state,
        merged,
        release_lock_of=operation.service if release_lock else "",
        from_seq=data_seq(operation),
        columns=columns or {},
    )
    updated = deps.store.operations.advance_operation(move, deps.clock.now())
    if updated is None:
        raise Superseded(operation.id)
    return updated


def ensure_current(deps: Deps, operation: Operation) -> None:
    """Superseded unless the operation is still exactly as read (state and data): a step that
    would send a change again (a stale etag's retry) sends nothing over a newer decision."""
    stored = deps.store.operations.operation(operation.id)
    if stored is None or stored.state != operation.state or data_seq(stored) != data_seq(operation):
        raise Superseded(operation.id)


def due_in(deps: Deps, seconds: float) -> str:
    """When a timed state is due: ``seconds`` from now, as stored (``due_at``)."""
    return (deps.clock.now() + timedelta(seconds=seconds)).isoformat()


@dataclass(frozen=True)
class Record:
    """How a workflow of ``kind`` records its progress: every write is its typed ``data`` (an
    ``OperationData``) with the changes, validated, then merged into the stored row (keys the
    type does not name are kept): ``commit`` (the next state and data together,
    compare-and-set, then the card), ``write`` (the same without the card) and ``end``."""

    kind: str
    refresh: Refresh
    data: type[OperationData]

    def write(
        self,
        deps: Deps,
        operation: Operation,
        state: str | None = None,
        release_lock: bool = False,
        columns: Mapping[str, str] | None = None,
        **changes: Any,
    ) -> Operation:
        """The next state and the data with ``changes`` (``write_step``: compare-and-set, else
        Superseded; ``columns`` with them), without the card: for a person's act that shows
        the card once it is done."""
        data = self.data.of(operation).changed(**changes).stored()
        return write_step(deps, operation, state, data, release_lock=release_lock, columns=columns)

    def commit(
        self,
        deps: Deps,
        operation: Operation,
        state: str | None = None,
        columns: Mapping[str, str] | None = None,
        **changes: Any,
    ) -> Operation:
        """Commit the next state and the data with ``changes`` together (``write``; the
        operation's ``columns`` too), then show the operation on its card; returns it as this
        commit left it, so that the step's next commit is conditional on it too."""
        updated = self.write(deps, operation, state, columns=columns, **changes)
        self.refresh(deps, operation.id, updated)
        return updated

    def end(
        self,
        deps: Deps,
        operation: Operation,
        state: str,
        audited: Mapping[str, Any],
        **changes: Any,
    ) -> Operation:
        """The last ``state`` with the data with ``changes`` (nothing is due any more) and the
        service's lock given back, together (compare-and-set); then the card, and the end
        audited as ``{kind}.{state}`` with ``audited``."""
        last = {**changes, "due_at": None}
        operation = self.write(deps, operation, state, release_lock=True, **last)
        self.refresh(deps, operation.id, operation)
        deps.audit(
            BOT_ACTOR,
            f"{self.kind}.{state}",
            "ok" if state == "succeeded" else state,
            service=operation.service,
            revision=operation.to_revision,
            operation_id=operation.id,
            **audited,
        )
        return operation


# -- the steps a card shows, each with its time -------------------------------------------------


def step_started(operation: Operation, step: str, now: datetime) -> dict[str, Any]:
    """The operation's ``steps`` with ``step`` running since ``now`` (kept as it is if it already
    began), to commit."""
    steps = dict(operation.data.get("steps") or {})
    if step not in steps:
        steps[step] = {"status": "running", "started": now.isoformat()}
    return {"steps": steps}


def step_ended(
    operation: Operation, step: str, now: datetime, status: str, **note: Any
) -> dict[str, Any]:
    """The operation's ``steps`` with ``step`` ended at ``now`` (``done`` or ``failed``; begun
    now if it had not begun), with its duration in seconds (``s``) and ``note``'s words and
    yes/no facts, to commit."""
    steps = dict(operation.data.get("steps") or {})
    mark = dict(steps.get(step) or {"started": now.isoformat()})
    started = datetime.fromisoformat(mark["started"])
    mark.update(status=status, ended=now.isoformat(), s=max((now - started).total_seconds(), 0.0))
    mark.update({k: v for k, v in note.items() if isinstance(v, str | bool)})
    steps[step] = mark
    return {"steps": steps}


# -- what people do to a running operation ------------------------------------------------------


def on_what_it_is(read: Callable[[], Read], act: Callable[[Read], Done]) -> Done:
    """``act`` on the operation as ``read`` now; again, on what it then is, if a step wrote it
    in between (every write is conditional on the operation being exactly as read: Superseded
    otherwise, and nothing was changed). UserError ``notice.moving`` if it never stands still."""
    for _ in range(MAX_TRIES):
        try:
            return act(read())
        except Superseded:
            continue
    raise UserError("notice.moving")


def stand_aside(
    deps: Deps,
    operation_id: str,
    user: str,
    reason: str,
    *,
    record: Record,
    tag: str,
    before_traffic: Callable[[Operation], bool],
    told: Callable[[Operation, dict[str, Any]], None],
) -> str | None:
    """An on-call engineer's emergency rollback while the operation's new revision has no traffic
    (``before_traffic``: no step gives it any before its next write, which this write's
    compare-and-set then refuses): the revision serving 100% is the one they asked to leave.
    The operation ends at once (``cancelled``, keeping the service's lock for the rollback that
    takes it over; its pending approval cancelled), ``told`` on its timeline, and its new
    revision's ``tag`` is returned, which that rollback removes. None when the new revision may
    have traffic (then the workflow takes it back by its own rules) or the operation is over."""
    said = {"reason": reason[:500]} if reason else {}
    outcome = {"code": "stood_aside", "by": user, **said}

    def act(operation: Operation | None) -> tuple[Operation, Operation] | None:
        if operation is None or operation.kind != record.kind or not before_traffic(operation):
            return None
        return operation, record.commit(deps, operation, "cancelled", due_at=None, outcome=outcome)

    stood = on_what_it_is(lambda: deps.store.operations.operation(operation_id), act)
    if stood is None:
        return None
    was, stopped = stood
    approval = deps.store.approvals.approval_for(stopped.id)
    if approval is not None:  # only a pending one changes
        deps.store.approvals.decide_approval(approval.id, "cancelled", user, deps.clock.now())
    deps.audit(
        user,
        f"{record.kind}.stood_aside",
        "ok",
        service=stopped.service,
        revision=stopped.to_revision,
        operation_id=stopped.id,
        was=was.state,
        **said,
    )
    told(stopped, outcome)
    return tag
