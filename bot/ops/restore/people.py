"""What people do to a restore: approve or reject it, go back while it is judged, and an on-call
engineer's /rollback while it runs (``take_back``), which always gets through.

A restore spends minutes to hours on its clone without touching traffic: an emergency never
waits for it. Before the restore's revision serves, the restore gives the service to the
on-call engineer's rollback and goes on with its clone; it takes the service back before it
deploys or shifts, and then builds on whatever revision serves (see machine.py). Once its
revision serves, on-call's /rollback is the restore's own going back.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.restore.record import commit, end, write
from bot.ops.restore.states import BEFORE_TRAFFIC, FINAL_STATES, SERVING, RestoreData
from bot.ops.restore.view import refresh
from bot.ops.stepping import on_what_it_is
from bot.store import Move, Operation


def decided(operation: Operation, approve: bool) -> Move:
    if approve:
        return Move(operation.id, "awaiting_approval", "approved")
    return Move(operation.id, "awaiting_approval", "rejected", release_lock_of=operation.service)


def on_decided(deps: Deps, operation: Operation, approve: bool, user: str) -> None:
    if deps.store.operations.move_operation(decided(operation, approve), deps.clock.now()):
        refresh(deps, operation.id)


def on_expired(deps: Deps, operation: Operation) -> None:
    move = Move(operation.id, "awaiting_approval", "expired", release_lock_of=operation.service)
    if deps.store.operations.move_operation(move, deps.clock.now()):
        deps.audit(BOT_ACTOR, "restore.expired", "expired", service=operation.service)
        refresh(deps, operation.id)


def go_back_now(deps: Deps, operation: Operation, user: str) -> bool:
    """A person asked to go back while the restore's revision serves and is judged; False if
    it does not (any more)."""

    def act(live: Operation) -> Operation | None:
        if live.state not in SERVING:
            return None
        return _go_back(deps, live, user, "asked")

    return _on_what_it_is(deps, operation.id, act) is not None


def take_back(deps: Deps, operation_id: str, user: str, reason: str = "") -> Operation | None:
    """An on-call engineer's /rollback of the service this restore holds. Returns the restore
    when it is what moves traffic (its revision serves: it goes back to the old one), None when
    the on-call engineer's own rollback is to run (the restore stepped aside, or had ended)."""

    def act(live: Operation) -> Operation | None:
        if live.state == "awaiting_approval":
            _supersede(deps, live, user)
            return None
        if live.state in BEFORE_TRAFFIC:
            _step_aside(deps, live, user, reason)
            return None
        if live.state in SERVING:
            return _go_back(deps, live, user, "on_call", reason)
        if live.state == "going_back":
            return live
        return None  # it has ended: its lock goes with it

    return _on_what_it_is(deps, operation_id, act)


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    def act(live: Operation) -> Operation | None:
        if live.state in FINAL_STATES:
            return None
        if RestoreData.of(live).shifted_at and live.state != "going_back":
            why = {"step": "internal", "why": "internal"}
            return commit(deps, live, "going_back", outcome=why)
        return end(deps, live, "failed", outcome={"step": live.state, "why": "internal"})

    _on_what_it_is(deps, operation_id, act)


def _on_what_it_is(
    deps: Deps, operation_id: str, act: Callable[[Operation], Operation | None]
) -> Operation | None:
    """``act`` on the restore as read now; again on what it then is if a step wrote it in
    between (every write is conditional on the restore being exactly as read)."""

    def read() -> Operation | None:
        live = deps.store.operations.operation(operation_id)
        return live if live is not None and live.kind == "restore" else None

    return on_what_it_is(read, lambda live: None if live is None else act(live))


def _go_back(deps: Deps, operation: Operation, user: str, why: str, reason: str = "") -> Operation:
    outcome = {"step": "verify", "why": why, "by": user, **({"reason": reason} if reason else {})}
    moved = commit(deps, operation, "going_back", due_at=None, outcome=outcome)
    deps.audit(user, "restore.go_back", "ok", service=moved.service, operation_id=moved.id)
    return moved


def _supersede(deps: Deps, operation: Operation, user: str) -> None:
    """It waited for a second tech lead: the emergency goes first, and the card stops asking."""
    now = deps.clock.now()
    approval = deps.store.approvals.approval_for(operation.id)
    outcome = {"why": "superseded", "by": user}
    write(deps, operation, "cancelled", release_lock=True, outcome=outcome, due_at=None)
    if approval is not None and approval.status == "pending":
        deps.store.approvals.decide_approval(approval.id, "cancelled", user, now)
    deps.store.journal.add_event(operation.id, now, "superseded", actor=user)
    deps.audit(
        user, "restore.superseded", "ok", service=operation.service, operation_id=operation.id
    )
    refresh(deps, operation.id)


def _step_aside(deps: Deps, operation: Operation, user: str, reason: str) -> None:
    """Give the service to the emergency; the clone goes on being made (it touches no
    traffic), and the restore takes the service back before it deploys or shifts."""
    now = deps.clock.now()
    yielded = {"by": user, "at": now.isoformat(), "state": operation.state, "reason": reason[:300]}
    write(deps, operation, None, release_lock=True, yielded=yielded)
    deps.store.journal.add_event(
        operation.id, now, "stepped_aside", actor=user, state=operation.state
    )
    deps.audit(
        user,
        "restore.stepped_aside",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        was=operation.state,
    )
    refresh(deps, operation.id)
