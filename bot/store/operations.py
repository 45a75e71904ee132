"""Operations, their steps, leases and service locks: one aggregate. An operation holds its
service's lock from its first moment to its last state, so the two are written together."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.store.models import DATA_SEQ, TERMINAL_STATES, Operation, ServiceLock, Step
from bot.store.repository import Repository, rows

# Read on every tick of every instance (and at every step of the sandbox's `wait`): built once,
# so that a tick does not rebuild and re-key the same statements each time.
_NOT_ENDED = Operation.state.not_in(TERMINAL_STATES)
UNFINISHED = select(Operation).where(_NOT_ENDED).order_by(Operation.created_at)
_LIVE = select(Operation.id).where(_NOT_ENDED)
STALE_LOCKS = select(ServiceLock).where(ServiceLock.operation_id.not_in(_LIVE))
# Who holds a service's lock, in one statement (``/traffic`` reads it on every answer).
LOCK_HOLDER = (
    select(
        Operation.id,
        Operation.kind,
        Operation.state,
        Operation.requested_by,
        Operation.to_revision,
        Operation.lease_until,
    )
    .join_from(ServiceLock, Operation, Operation.id == ServiceLock.operation_id)
    .where(ServiceLock.service == bindparam("service"))
)
FREE_LOCK = delete(ServiceLock).where(
    ServiceLock.service == bindparam("service"), ServiceLock.operation_id == bindparam("held_by")
)


@dataclass(frozen=True)
class LockHolder:
    operation_id: str
    kind: str
    state: str
    requested_by: str
    to_revision: str
    lease_until: datetime | None = None  # a live lease: an instance is running it right now


@dataclass(frozen=True)
class Move:
    """An operation's conditional step: from ``from_state`` to ``state``, with its data."""

    operation_id: str
    from_state: str
    state: str
    data: dict[str, Any] | None = None  # the operation's whole data, when it changes
    release_lock_of: str = ""  # the service whose lock the operation gives back
    # With ``data``: move only if the data is still the version the caller read (``data_seq``),
    # and count one more. The state alone cannot tell a same-state save, nor A -> B -> A.
    from_seq: int | None = None
    # The operation's own columns a step sets with its move (STEP_COLUMNS), in the same write.
    columns: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.columns) - STEP_COLUMNS
        if unknown:
            raise ValueError(f"a step does not set {sorted(unknown)}")


# What a step learns that lives in the operation's columns: the revisions it moves between
# (a restore builds its own) and the Cloud Run operation it sent.
STEP_COLUMNS = frozenset({"to_revision", "from_revision", "cloud_operation"})


class ServiceHeld(Exception):
    """Another operation holds the service: nothing was written."""


class NewerOperation(Exception):
    """An operation its caller had not seen is now the newest: nothing was written."""


@dataclass(frozen=True)
class Newest:
    """The newest operation of ``kind`` in one of ``states`` on a service, as a caller read it
    (its id; None when there was none)."""

    kind: str
    states: tuple[str, ...]
    operation_id: str | None


def newest_in(
    session: Session, service: str, kind: str, states: Collection[str] | None
) -> Operation | None:
    """The newest operation of ``kind`` on ``service`` (in one of ``states``), read in
    ``session``."""
    query = select(Operation).where(Operation.service == service, Operation.kind == kind)
    if states is not None:
        query = query.where(Operation.state.in_(tuple(states)))
    return session.scalars(query.order_by(Operation.created_at.desc()).limit(1)).first()


def move_in(session: Session, move: Move, now: datetime, idle_only: bool = False) -> bool:
    """Move the operation in ``session`` (a caller's transaction), only if it is still as
    ``move`` read it (and, ``idle_only``, nobody holds a live lease on it); gives back its
    service's lock with it. False, having changed nothing, when it lost."""
    values: dict[str, Any] = {**move.columns, "state": move.state, "updated_at": now}
    if move.data is not None:
        values["data"] = move.data
    if move.state in TERMINAL_STATES:
        values["finished_at"] = now
    query = update(Operation).where(
        Operation.id == move.operation_id, Operation.state == move.from_state
    )
    if move.from_seq is not None:
        seq = func.coalesce(Operation.data[DATA_SEQ].as_integer(), 0)
        query = query.where(seq == move.from_seq)
        values["data"] = {**(move.data or {}), DATA_SEQ: move.from_seq + 1}
    if idle_only:
        query = query.where((Operation.lease_until.is_(None)) | (Operation.lease_until < now))
    if rows(session.execute(query.values(**values))) != 1:
        return False
    if move.release_lock_of:
        session.execute(
            delete(ServiceLock).where(
                ServiceLock.service == move.release_lock_of,
                ServiceLock.operation_id == move.operation_id,
            )
        )
    return True


class Operations(Repository):
    """``store.operations``: an operation's life, its steps and its service's lock."""

    def create_operation(self, now: datetime, **fields: Any) -> Operation:
        operation = Operation(created_at=now, updated_at=now, **fields)
        with self._session() as session:
            session.add(operation)
        return operation

    def open_operation(
        self,
        now: datetime,
        *,
        take_over_from: str = "",
        unchanged: Newest | None = None,
        **fields: Any,
    ) -> Operation:
        """Record an operation that holds its service from its first moment, in one
        transaction: no instance's tick can start an operation that may still lose the race
        for its service (a loser would run, then be cancelled under its own feet). With
        ``take_over_from``, the service's lock passes from that operation (a drill hands its
        service to its rollback). With ``unchanged``, only if the newest operation it names is
        still the one its caller read, once the service is held.

        Raises ServiceHeld or NewerOperation, having written nothing."""
        operation = Operation(created_at=now, updated_at=now, **fields)
        try:
            with self._session() as session:
                session.add(operation)
                session.flush()
                if take_over_from:
                    moved = session.execute(
                        update(ServiceLock)
                        .where(
                            ServiceLock.service == operation.service,
                            ServiceLock.operation_id == take_over_from,
                        )
                        .values(operation_id=operation.id)
                    )
                    if rows(moved) != 1:
                        raise ServiceHeld(operation.service)
                else:
                    lock = ServiceLock(
                        service=operation.service, operation_id=operation.id, acquired_at=now
                    )
                    session.add(lock)
                    session.flush()
                if unchanged is not None:
                    newest = newest_in(session, operation.service, unchanged.kind, unchanged.states)
                    if (newest.id if newest else None) != unchanged.operation_id:
                        raise NewerOperation(operation.service)
        except IntegrityError:
            raise ServiceHeld(fields.get("service", "")) from None
        return operation

    def operation(self, operation_id: str) -> Operation | None:
        with self._session() as session:
            return session.get(Operation, operation_id)

    def update_operation(self, operation_id: str, now: datetime, **fields: Any) -> Operation:
        with self._session() as session:
            operation = session.get(Operation, operation_id)
            if operation is None:
                raise KeyError(operation_id)
            for name, value in fields.items():
                setattr(operation, name, value)
            operation.updated_at = now
            if fields.get("state") in TERMINAL_STATES:
                operation.finished_at = now
        return operation

    def remember_message_ts(self, operation_id: str, ts: str, now: datetime) -> bool:
        """Store the ts of its card unless it is the one stored already (one statement)."""
        return self._remember_message_ts(Operation, operation_id, ts, now)

    def merge_data(self, operation_id: str, now: datetime, **values: Any) -> Operation:
        with self._session() as session:
            operation = session.get(Operation, operation_id)
            if operation is None:
                raise KeyError(operation_id)
            operation.data = {**(operation.data or {}), **values}
            operation.updated_at = now
        return operation

    def latest_operation(
        self, service: str, kind: str, states: Collection[str] | None = None
    ) -> Operation | None:
        """The newest operation of ``kind`` on ``service``: in one of ``states``, or whatever
        its state."""
        with self._session() as session:
            return newest_in(session, service, kind, states)

    def unfinished_operations(self) -> list[Operation]:
        with self._session() as session:
            return list(session.scalars(UNFINISHED))

    def last_change(self, service: str) -> Operation | None:
        """The newest operation that left a revision at 100% of ``service``: a release, a
        rollback, a flag flip or a restore that succeeded, or one of them rolled back (a drill
        moves traffic through its own rollback)."""
        with self._session() as session:
            query = (
                select(Operation)
                .where(
                    Operation.service == service,
                    Operation.kind.in_(("release", "rollback", "flag", "restore")),
                    Operation.state.in_(("succeeded", "rolled_back")),
                    Operation.finished_at.is_not(None),
                )
                .order_by(Operation.finished_at.desc())
                .limit(1)
            )
            return session.scalars(query).first()

    def claim_lease(
        self,
        operation_id: str,
        owner: str,
        now: datetime,
        until: datetime,
        seen_owner: str | None = None,
    ) -> bool:
        """Take (or renew) the right to run this operation; False if another runner holds it.
        With ``seen_owner``, only while the lease is still that runner's (or nobody's, given
        ""): a takeover from a crashed instance is then told apart from an ordinary claim."""
        query = (
            update(Operation)
            .where(Operation.id == operation_id)
            .where(
                (Operation.lease_owner == owner)
                | (Operation.lease_until.is_(None))
                | (Operation.lease_until < now)
            )
        )
        if seen_owner is not None:
            query = query.where(Operation.lease_owner == seen_owner)
        with self._session() as session:
            result = session.execute(query.values(lease_owner=owner, lease_until=until))
            return rows(result) == 1

    def release_lease(self, operation_id: str, owner: str) -> None:
        with self._session() as session:
            session.execute(
                update(Operation)
                .where(Operation.id == operation_id, Operation.lease_owner == owner)
                .values(lease_owner="", lease_until=None)
            )

    def move_operation(self, move: Move, now: datetime) -> bool:
        """Move an operation from one state to the next only if it is still in the state the
        caller saw and nobody holds a live lease on it (one conditional UPDATE)."""
        with self._session() as session:
            return move_in(session, move, now, idle_only=True)

    def advance_operation(self, move: Move, now: datetime) -> Operation | None:
        """``move_operation`` for the instance running the operation (it holds the lease) and
        for a person's move on it: only if the operation is still in the state (and, with
        ``from_seq``, the data) the caller read, so that neither overwrites the other. Returns
        the operation as this move left it (read in the same transaction), None if it lost."""
        with self._session() as session:
            if not move_in(session, move, now):
                return None
            return session.get(Operation, move.operation_id)

    # -- steps -------------------------------------------------------------------------------

    def start_step(self, operation_id: str, name: str, now: datetime) -> None:
        with self._session() as session:
            session.add(
                Step(operation_id=operation_id, name=name, status="started", started_at=now)
            )

    def finish_step(
        self, operation_id: str, name: str, now: datetime, status: str, result: dict[str, Any]
    ) -> None:
        with self._session() as session:
            step = session.scalars(
                select(Step)
                .where(Step.operation_id == operation_id, Step.name == name)
                .order_by(Step.id.desc())
            ).first()
            if step is None:
                step = Step(operation_id=operation_id, name=name, started_at=now)
                session.add(step)
            step.status, step.result, step.finished_at = status, result, now

    def steps(self, operation_id: str) -> list[Step]:
        with self._session() as session:
            query = select(Step).where(Step.operation_id == operation_id).order_by(Step.id)
            return list(session.scalars(query))

    # -- service locks: one operation per service --------------------------------------------

    def acquire_lock(self, service: str, operation_id: str, now: datetime) -> bool:
        try:
            with self._session() as session:
                session.add(
                    ServiceLock(service=service, operation_id=operation_id, acquired_at=now)
                )
        except IntegrityError:
            return False
        return True

    def release_lock(self, service: str, operation_id: str) -> None:
        with self._session() as session:
            session.execute(
                delete(ServiceLock).where(
                    ServiceLock.service == service, ServiceLock.operation_id == operation_id
                )
            )

    def hand_over_lock(self, service: str, from_operation: str, to_operation: str) -> bool:
        """Give the service's lock from one operation to another in one step (a drill hands
        the service to the rollback it starts); False when ``from_operation`` does not hold it."""
        with self._session() as session:
            result = session.execute(
                update(ServiceLock)
                .where(ServiceLock.service == service, ServiceLock.operation_id == from_operation)
                .values(operation_id=to_operation)
            )
            return rows(result) == 1

    def release_stale_locks(self) -> list[str]:
        """Give back every lock whose operation has ended (or is gone): a crash between an
        operation's last state and its unlock must not keep the service busy forever."""
        with self._session() as session:
            stale = list(session.scalars(STALE_LOCKS))
            for lock in stale:
                session.execute(FREE_LOCK, {"service": lock.service, "held_by": lock.operation_id})
            return [lock.service for lock in stale]

    def lock_holder(self, service: str) -> LockHolder | None:
        with self._reading() as connection:
            row = connection.execute(LOCK_HOLDER, {"service": service}).first()
        return None if row is None else LockHolder(*row)
