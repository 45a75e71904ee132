"""Durable state: operations and their steps, approvals, the timeline, the audit trail, service
locks and the serving history. The same code runs on SQLite and PostgreSQL.

Every method is one short transaction: a step's result is committed before the next one starts.
Races between bot instances (or between clicks) are settled by the database itself: a
conditional UPDATE or a primary-key INSERT, never a read-then-write.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    delete,
    event,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Mapper, Session, mapped_column, sessionmaker

# The migration records' tables share the store's Base, so Alembic and the schema see them.
import bot.store_migrations  # noqa: F401
from bot.database import Base, UTCDateTime, make_engine
from bot.schema import ensure_schema


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class Operation(Base):
    __tablename__ = "operations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))  # "rollback"
    service: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    requested_by: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    from_revision: Mapped[str] = mapped_column(String(128), default="")
    to_revision: Mapped[str] = mapped_column(String(128), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)  # images, ages, timings, error
    cloud_operation: Mapped[str] = mapped_column(String(256), default="")
    message_ts: Mapped[str] = mapped_column(String(32), default="")
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Step(Base):
    __tablename__ = "steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operation_id: Mapped[str] = mapped_column(ForeignKey("operations.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # started | done | failed
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApprovalRequest(Base):
    __tablename__ = "approvals"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    operation_id: Mapped[str] = mapped_column(ForeignKey("operations.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(
        String(16), index=True
    )  # pending|approved|rejected|expired|cancelled
    decided_by: Mapped[str] = mapped_column(String(32), default="")
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]


class TimelineEvent(Base):
    __tablename__ = "timeline"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operation_id: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(32), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AuditRecord(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(64), default="")
    revision: Mapped[str] = mapped_column(String(128), default="")
    operation_id: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ServiceLock(Base):
    __tablename__ = "service_locks"
    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    operation_id: Mapped[str] = mapped_column(String(32))
    acquired_at: Mapped[datetime]


class ServingHistory(Base):
    """A revision that Runback saw (or made) serve 100%, and revisions rolled back from."""

    __tablename__ = "serving_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    revision: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # "served" | "rolled_back_from"
    at: Mapped[datetime]
    operation_id: Mapped[str] = mapped_column(String(32), default="")


class IncidentRecord(Base):
    """An alert from Cloud Monitoring and what Runback did about it. One per alert id."""

    __tablename__ = "incidents"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    external_id: Mapped[str] = mapped_column(String(256), unique=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    revision: Mapped[str] = mapped_column(String(128), default="")  # the one judged bad
    managed: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # open|mitigated|resolved
    verdict: Mapped[str] = mapped_column(String(16), default="")
    alert: Mapped[dict[str, Any]] = mapped_column(default=dict)  # policy, metric, values, url
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)  # judgements, acks
    channel: Mapped[str] = mapped_column(String(32), default="")
    message_ts: Mapped[str] = mapped_column(String(32), default="")
    operation_id: Mapped[str] = mapped_column(String(32), default="")
    observe_until: Mapped[datetime | None] = mapped_column(nullable=True)
    # "" | claimed | posted, then updating | updated (numbers after mitigation) | no_after
    postmortem: Mapped[str] = mapped_column(String(16), default="")
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    received_at: Mapped[datetime]
    mitigated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime]


class SeenRequest(Base):
    """A signed Slack request already acted on (by any instance), kept until it could no longer
    pass the signature's 5-minute window: a replay finds its key here."""

    __tablename__ = "seen_requests"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


@event.listens_for(Base, "before_insert", propagate=True)
@event.listens_for(Base, "before_update", propagate=True)
def _fit_text_columns(_mapper: Mapper[Any], _connection: Any, row: Base) -> None:
    """Text that reaches a row fits it on every backend: PostgreSQL refuses NUL characters and
    strings longer than a VARCHAR, where SQLite would take both. Long values are cut."""
    for column in row.__table__.columns:
        value = getattr(row, column.key, None)
        if isinstance(value, str) and isinstance(column.type, String):
            fitted = value.replace("\x00", "")
            if column.type.length is not None:
                fitted = fitted[: column.type.length]
            if fitted != value:
                setattr(row, column.key, fitted)


class OutboxMessage(Base):
    """A Slack message Runback owes the channel: an operation's or incident's card (``card`` is
    its key; one row per card, re-rendered in place) or a one-off post (``card`` empty). Slack
    is told off the critical path and retried with backoff until it has seen ``version``."""

    __tablename__ = "slack_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    card: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    channel: Mapped[str] = mapped_column(String(32))
    thread_of: Mapped[str] = mapped_column(String(64), default="")  # a card key to reply under
    ts: Mapped[str] = mapped_column(String(32), default="")  # the card's message, once posted
    stale_ts: Mapped[str] = mapped_column(String(32), default="")  # a replaced card to correct
    message: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"text", "blocks"}
    version: Mapped[int] = mapped_column(Integer, default=1)
    shown: Mapped[int] = mapped_column(Integer, default=0)  # the version Slack has
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed tries since last success
    due_at: Mapped[datetime] = mapped_column(index=True)
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    uncertain_since: Mapped[str] = mapped_column(String(32), default="")  # a post without answer
    error: Mapped[str] = mapped_column(String(64), default="")  # Slack's last error code
    reply_url: Mapped[str] = mapped_column(Text, default="")  # the requester's response_url
    told_requester: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DrillRecord(Base):
    """One rollback drill (or a scheduled one that was missed), kept as the drill history."""

    __tablename__ = "drills"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    service: Mapped[str] = mapped_column(String(64), index=True)
    # a scheduled drill's (or a missed one's) due slot: the unique key that lets one instance
    # start it however many ticks race for it
    slot: Mapped[str | None] = mapped_column(String(160), unique=True, nullable=True)
    trigger: Mapped[str] = mapped_column(String(16))  # command | schedule
    requested_by: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16), index=True)  # running|passed|failed|missed
    operation_id: Mapped[str] = mapped_column(String(32), default="")
    started_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    time_to_safe_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)  # revisions, steps, failure


class ProcedurePost(Base):
    """A version of the rollback procedure Runback posted for the team to acknowledge."""

    __tablename__ = "procedure_posts"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    posted_by: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    posted_at: Mapped[datetime]


class ProcedureAck(Base):
    """Someone clicked "I've read it" on a version of the rollback procedure."""

    __tablename__ = "procedure_acks"
    __table_args__ = (UniqueConstraint("version", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]


TERMINAL_STATES = frozenset(
    {"succeeded", "failed", "rejected", "expired", "cancelled", "rolled_back"}
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
class Decided:
    status: str  # approved | rejected | cancelled
    by: str


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


DATA_SEQ = "seq"  # the key in an operation's data that counts its conditional writes


def data_seq(operation: Operation) -> int:
    """How many conditional writes (``Move.from_seq``) an operation's data has seen."""
    return int((operation.data or {}).get(DATA_SEQ) or 0)


class _Lost(Exception):
    """A conditional update in a multi-statement transaction lost its race: roll back."""


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


def _newest(
    session: Session, service: str, kind: str, states: Collection[str] | None
) -> Operation | None:
    query = select(Operation).where(Operation.service == service, Operation.kind == kind)
    if states is not None:
        query = query.where(Operation.state.in_(tuple(states)))
    return session.scalars(query.order_by(Operation.created_at.desc()).limit(1)).first()


def _move(session: Session, move: Move, now: datetime, idle_only: bool = False) -> bool:
    values: dict[str, Any] = {"state": move.state, "updated_at": now}
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
    if _rows(session.execute(query.values(**values))) != 1:
        return False
    if move.release_lock_of:
        session.execute(
            delete(ServiceLock).where(
                ServiceLock.service == move.release_lock_of,
                ServiceLock.operation_id == move.operation_id,
            )
        )
    return True


def _rows(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE changed (``Session.execute`` types its result loosely)."""
    return cast("CursorResult[Any]", result).rowcount


class Store:
    def __init__(self, url: str, upgrade: bool = False) -> None:
        """Open the database: an empty one gets its tables, an older one is upgraded only when
        ``upgrade`` (else bot.schema.SchemaError says what to run)."""
        self.engine = make_engine(url)
        try:
            self.schema_was = ensure_schema(self.engine, upgrade=upgrade)
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite serves one process, and makes concurrent writers sleep and retry (1, 2, 5 …
        # 100 ms): a write per Slack request put hundreds of ms on acks. There, the keys of
        # reads are remembered in the process alone; those of requests that change something
        # go to the table too, so that a restart never forgets them. PostgreSQL, shared by
        # instances, remembers every key for all.
        self._seen_here: dict[str, datetime] | None = (
            {} if self.engine.dialect.name == "sqlite" else None
        )
        self._seen_lock = threading.Lock()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- seen requests and the health check --------------------------------------------------

    def first_sighting(self, key: str, expires_at: datetime, durable: bool = True) -> bool:
        """Remember a request's key; True only for the first caller, on any instance and
        across restarts. ``durable=False`` (a read, answered the same twice): on SQLite the
        process alone remembers it."""
        if self._seen_here is not None:
            if not self._first_sighting_here(key, expires_at):
                return False
            if not durable:
                return True
        try:
            with self.session() as session:
                session.add(SeenRequest(key=key, expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    def _first_sighting_here(self, key: str, expires_at: datetime) -> bool:
        assert self._seen_here is not None
        with self._seen_lock:
            if key in self._seen_here:
                return False
            if len(self._seen_here) > 10_000:  # forget what can no longer be replayed
                now = datetime.now(UTC)
                self._seen_here = {k: v for k, v in self._seen_here.items() if v > now}
            self._seen_here[key] = expires_at
            return True

    def check_writable(self, now: datetime) -> None:
        """Forget expired request keys and write one short-lived row: raises (OperationalError,
        InternalError) when the database refuses writes."""
        with self.session() as session:
            session.execute(delete(SeenRequest).where(SeenRequest.expires_at < now))
            session.add(SeenRequest(key=f"health:{new_id()}{new_id()}", expires_at=now))

    # -- operations --------------------------------------------------------------------------

    def create_operation(self, now: datetime, **fields: Any) -> Operation:
        operation = Operation(created_at=now, updated_at=now, **fields)
        with self.session() as session:
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
            with self.session() as session:
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
                    if _rows(moved) != 1:
                        raise ServiceHeld(operation.service)
                else:
                    lock = ServiceLock(
                        service=operation.service, operation_id=operation.id, acquired_at=now
                    )
                    session.add(lock)
                    session.flush()
                if unchanged is not None:
                    newest = _newest(session, operation.service, unchanged.kind, unchanged.states)
                    if (newest.id if newest else None) != unchanged.operation_id:
                        raise NewerOperation(operation.service)
        except IntegrityError:
            raise ServiceHeld(fields.get("service", "")) from None
        return operation

    def operation(self, operation_id: str) -> Operation | None:
        with self.session() as session:
            return session.get(Operation, operation_id)

    def update_operation(self, operation_id: str, now: datetime, **fields: Any) -> Operation:
        with self.session() as session:
            operation = session.get(Operation, operation_id)
            if operation is None:
                raise KeyError(operation_id)
            for name, value in fields.items():
                setattr(operation, name, value)
            operation.updated_at = now
            if fields.get("state") in TERMINAL_STATES:
                operation.finished_at = now
        return operation

    def merge_data(self, operation_id: str, now: datetime, **values: Any) -> Operation:
        with self.session() as session:
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
        with self.session() as session:
            return _newest(session, service, kind, states)

    def unfinished_operations(self) -> list[Operation]:
        with self.session() as session:
            query = select(Operation).where(Operation.state.not_in(TERMINAL_STATES))
            return list(session.scalars(query.order_by(Operation.created_at)))

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
        with self.session() as session:
            result = session.execute(query.values(lease_owner=owner, lease_until=until))
            return _rows(result) == 1

    def release_lease(self, operation_id: str, owner: str) -> None:
        with self.session() as session:
            session.execute(
                update(Operation)
                .where(Operation.id == operation_id, Operation.lease_owner == owner)
                .values(lease_owner="", lease_until=None)
            )

    # -- steps -------------------------------------------------------------------------------

    def start_step(self, operation_id: str, name: str, now: datetime) -> None:
        with self.session() as session:
            session.add(
                Step(operation_id=operation_id, name=name, status="started", started_at=now)
            )

    def finish_step(
        self, operation_id: str, name: str, now: datetime, status: str, result: dict[str, Any]
    ) -> None:
        with self.session() as session:
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
        with self.session() as session:
            query = select(Step).where(Step.operation_id == operation_id).order_by(Step.id)
            return list(session.scalars(query))

    # -- service locks: one operation per service --------------------------------------------

    def acquire_lock(self, service: str, operation_id: str, now: datetime) -> bool:
        try:
            with self.session() as session:
                session.add(
                    ServiceLock(service=service, operation_id=operation_id, acquired_at=now)
                )
        except IntegrityError:
            return False
        return True

    def release_lock(self, service: str, operation_id: str) -> None:
        with self.session() as session:
            session.execute(
                delete(ServiceLock).where(
                    ServiceLock.service == service, ServiceLock.operation_id == operation_id
                )
            )

    def release_stale_locks(self) -> list[str]:
        """Give back every lock whose operation has ended (or is gone): a crash between an
        operation's last state and its unlock must not keep the service busy forever."""
        with self.session() as session:
            live = select(Operation.id).where(Operation.state.not_in(TERMINAL_STATES))
            stale = list(
                session.scalars(select(ServiceLock).where(ServiceLock.operation_id.not_in(live)))
            )
            for lock in stale:
                session.execute(
                    delete(ServiceLock).where(
                        ServiceLock.service == lock.service,
                        ServiceLock.operation_id == lock.operation_id,
                    )
                )
            return [lock.service for lock in stale]

    def lock_holder(self, service: str) -> LockHolder | None:
        with self.session() as session:
            lock = session.get(ServiceLock, service)
            if lock is None:
                return None
            op = session.get(Operation, lock.operation_id)
            if op is None:
                return None
            return LockHolder(
                op.id, op.kind, op.state, op.requested_by, op.to_revision, op.lease_until
            )

    # -- approvals ---------------------------------------------------------------------------

    def create_approval(self, now: datetime, **fields: Any) -> ApprovalRequest:
        approval = ApprovalRequest(created_at=now, status="pending", **fields)
        with self.session() as session:
            session.add(approval)
        return approval

    def approval(self, approval_id: str) -> ApprovalRequest | None:
        with self.session() as session:
            return session.get(ApprovalRequest, approval_id)

    def approval_for(self, operation_id: str) -> ApprovalRequest | None:
        with self.session() as session:
            query = select(ApprovalRequest).where(ApprovalRequest.operation_id == operation_id)
            return session.scalars(query.order_by(ApprovalRequest.created_at.desc())).first()

    def decide_approval(
        self, approval_id: str, status: str, decided_by: str, now: datetime
    ) -> bool:
        """Atomically move a pending, unexpired approval to ``status``; True for the one winner."""
        with self.session() as session:
            result = session.execute(
                update(ApprovalRequest)
                .where(
                    ApprovalRequest.id == approval_id,
                    ApprovalRequest.status == "pending",
                    ApprovalRequest.expires_at > now,
                )
                .values(status=status, decided_by=decided_by, decided_at=now)
            )
            return _rows(result) == 1

    def decide_and_move(
        self,
        approval_id: str,
        decision: Decided,
        now: datetime,
        move: Move,
    ) -> bool:
        """Record a decision and its operation's next state in one transaction: a crash leaves
        either both (the workflow carries on) or neither (the request is still pending and
        expires as promised). True for the one winner; False, changing nothing, otherwise."""
        try:
            with self.session() as session:
                won = session.execute(
                    update(ApprovalRequest)
                    .where(
                        ApprovalRequest.id == approval_id,
                        ApprovalRequest.status == "pending",
                        ApprovalRequest.expires_at > now,
                    )
                    .values(status=decision.status, decided_by=decision.by, decided_at=now)
                )
                if _rows(won) != 1 or not _move(session, move, now):
                    raise _Lost
        except _Lost:
            return False
        return True

    def move_operation(self, move: Move, now: datetime) -> bool:
        """Move an operation from one state to the next only if it is still in the state the
        caller saw and nobody holds a live lease on it (one conditional UPDATE)."""
        with self.session() as session:
            return _move(session, move, now, idle_only=True)

    def advance_operation(self, move: Move, now: datetime) -> Operation | None:
        """``move_operation`` for the instance running the operation (it holds the lease) and
        for a person's move on it: only if the operation is still in the state (and, with
        ``from_seq``, the data) the caller read, so that neither overwrites the other. Returns
        the operation as this move left it (read in the same transaction), None if it lost."""
        with self.session() as session:
            if not _move(session, move, now):
                return None
            return session.get(Operation, move.operation_id)

    def next_approval_expiry(self) -> datetime | None:
        """When the first pending approval expires; None when none is pending."""
        with self.session() as session:
            query = select(func.min(ApprovalRequest.expires_at)).where(
                ApprovalRequest.status == "pending"
            )
            return session.scalar(query)

    def expire_approvals(self, now: datetime) -> list[ApprovalRequest]:
        """Mark every pending approval past its deadline expired; returns those it changed."""
        with self.session() as session:
            due = list(
                session.scalars(
                    select(ApprovalRequest).where(
                        ApprovalRequest.status == "pending", ApprovalRequest.expires_at <= now
                    )
                )
            )
            expired = []
            for approval in due:
                result = session.execute(
                    update(ApprovalRequest)
                    .where(ApprovalRequest.id == approval.id, ApprovalRequest.status == "pending")
                    .values(status="expired", decided_at=now)
                )
                if _rows(result) == 1:
                    expired.append(approval)
            return expired

    # -- timeline and audit ------------------------------------------------------------------

    def add_event(
        self, operation_id: str, now: datetime, kind: str, actor: str = "", **data: Any
    ) -> None:
        with self.session() as session:
            session.add(
                TimelineEvent(operation_id=operation_id, at=now, kind=kind, actor=actor, data=data)
            )

    def timeline(self, operation_id: str) -> list[TimelineEvent]:
        with self.session() as session:
            query = select(TimelineEvent).where(TimelineEvent.operation_id == operation_id)
            return list(session.scalars(query.order_by(TimelineEvent.id)))

    def add_audit(self, record: AuditRecord) -> int:
        with self.session() as session:
            session.add(record)
            session.flush()
            return record.id

    def audit_record(self, record_id: int) -> AuditRecord | None:
        with self.session() as session:
            return session.get(AuditRecord, record_id)

    def audit(self, limit: int = 1000) -> list[AuditRecord]:
        with self.session() as session:
            return list(session.scalars(select(AuditRecord).order_by(AuditRecord.id).limit(limit)))

    # -- serving history ---------------------------------------------------------------------

    def record_serving(
        self, service: str, revision: str, kind: str, now: datetime, operation_id: str = ""
    ) -> None:
        with self.session() as session:
            session.add(
                ServingHistory(
                    service=service, revision=revision, kind=kind, at=now, operation_id=operation_id
                )
            )

    def served_revisions(self, service: str) -> list[str]:
        """Revisions seen serving 100%, newest first, without repeats."""
        return self._history(service, "served")

    def rolled_back_from(self, service: str) -> set[str]:
        return set(self._history(service, "rolled_back_from"))

    def serving_events(self, service: str) -> list[tuple[str, str]]:
        """Every ``(revision, kind)`` of the serving record, newest first."""
        with self.session() as session:
            rows = session.execute(
                select(ServingHistory.revision, ServingHistory.kind)
                .where(ServingHistory.service == service)
                .order_by(ServingHistory.id.desc())
            )
            return [(revision, kind) for revision, kind in rows]

    def _history(self, service: str, kind: str) -> list[str]:
        with self.session() as session:
            rows = session.scalars(
                select(ServingHistory.revision)
                .where(ServingHistory.service == service, ServingHistory.kind == kind)
                .order_by(ServingHistory.id.desc())
            )
            return list(dict.fromkeys(rows))

    # -- incidents ---------------------------------------------------------------------------

    def create_incident(self, now: datetime, **fields: Any) -> tuple[IncidentRecord, bool]:
        """Insert the incident, or return the one already recorded for its alert id."""
        record = IncidentRecord(received_at=now, updated_at=now, **fields)
        try:
            with self.session() as session:
                session.add(record)
        except IntegrityError:
            existing = self.incident_by_alert(fields["external_id"])
            assert existing is not None
            return existing, False
        return record, True

    def incident(self, incident_id: str) -> IncidentRecord | None:
        with self.session() as session:
            return session.get(IncidentRecord, incident_id)

    def incident_by_alert(self, external_id: str) -> IncidentRecord | None:
        with self.session() as session:
            query = select(IncidentRecord).where(IncidentRecord.external_id == external_id)
            return session.scalars(query).first()

    def update_incident(self, incident_id: str, now: datetime, **fields: Any) -> IncidentRecord:
        with self.session() as session:
            record = session.get(IncidentRecord, incident_id)
            if record is None:
                raise KeyError(incident_id)
            for name, value in fields.items():
                setattr(record, name, value)
            record.updated_at = now
        return record

    def open_incidents(self, service: str | None = None) -> list[IncidentRecord]:
        """Incidents not yet resolved (open or mitigated), oldest first."""
        with self.session() as session:
            query = select(IncidentRecord).where(IncidentRecord.state.in_(("open", "mitigated")))
            if service is not None:
                query = query.where(IncidentRecord.service == service)
            return list(session.scalars(query.order_by(IncidentRecord.received_at)))

    def claim_incident(
        self, incident_id: str, seen_updated_at: datetime, now: datetime, data: dict[str, Any]
    ) -> bool:
        """Write ``data`` only if the incident is as last seen (compare-and-set on
        ``updated_at``): of two checks that read it at once (two ticks, two instances), one
        goes on; the other finds it moved."""
        with self.session() as session:
            result = session.execute(
                update(IncidentRecord)
                .where(
                    IncidentRecord.id == incident_id,
                    IncidentRecord.updated_at == seen_updated_at,
                )
                .values(updated_at=now, data=data)
            )
            return _rows(result) == 1

    def claim_postmortem(
        self, incident_id: str, from_state: str = "", to_state: str = "claimed"
    ) -> bool:
        """True exactly once per incident: whoever wins posts the postmortem (from "" to
        "claimed"), or its update with the numbers after mitigation (from "posted")."""
        with self.session() as session:
            result = session.execute(
                update(IncidentRecord)
                .where(IncidentRecord.id == incident_id, IncidentRecord.postmortem == from_state)
                .values(postmortem=to_state)
            )
            return _rows(result) == 1

    # -- the Slack outbox ----------------------------------------------------------------------

    def stage_card(
        self, card: str, channel: str, message: dict[str, Any], now: datetime, thread_of: str = ""
    ) -> None:
        """Record the card's newest content; the courier shows it (a new version wins)."""
        if self._restage_card(card, message, now):
            return
        try:
            with self.session() as session:
                session.add(_outbox_row(card, channel, message, now, thread_of))
        except IntegrityError:  # another instance staged this new card first
            self._restage_card(card, message, now)

    def _restage_card(self, card: str, message: dict[str, Any], now: datetime) -> bool:
        """One UPDATE, so that a delivery's outcome committed meanwhile is never overwritten."""
        with self.session() as session:
            result = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.card == card)
                .values(
                    message=message,
                    version=OutboxMessage.version + 1,
                    updated_at=now,
                    # a card in backoff (429, outage) keeps its wait
                    due_at=case(
                        (OutboxMessage.attempts == 0, literal(now, UTCDateTime)),
                        else_=OutboxMessage.due_at,
                    ),
                )
            )
            return _rows(result) == 1

    def stage_post(
        self, channel: str, message: dict[str, Any], now: datetime, thread_of: str = ""
    ) -> None:
        with self.session() as session:
            session.add(_outbox_row(None, channel, message, now, thread_of))

    def outbox_row(self, card: str) -> OutboxMessage | None:
        with self.session() as session:
            return session.scalars(select(OutboxMessage).where(OutboxMessage.card == card)).first()

    def due_outbox(self, now: datetime, limit: int = 50) -> list[OutboxMessage]:
        """Messages Slack has not seen in their newest version, due now, oldest first."""
        with self.session() as session:
            query = (
                select(OutboxMessage)
                .where(
                    (OutboxMessage.shown < OutboxMessage.version) | (OutboxMessage.stale_ts != ""),
                    OutboxMessage.due_at <= now,
                )
                .where(OutboxMessage.claimed_until.is_(None) | (OutboxMessage.claimed_until < now))
                .order_by(OutboxMessage.id)
                .limit(limit)
            )
            return list(session.scalars(query))

    def claim_outbox(self, row_id: int, now: datetime, until: datetime) -> OutboxMessage | None:
        """The row, if this caller won the right to deliver it until ``until`` (and it is still
        owed: another instance may have delivered it since the caller listed it)."""
        with self.session() as session:
            result = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.due_at <= now)
                .where(
                    (OutboxMessage.shown < OutboxMessage.version) | (OutboxMessage.stale_ts != "")
                )
                .where(OutboxMessage.claimed_until.is_(None) | (OutboxMessage.claimed_until < now))
                .values(claimed_until=until)
            )
            if _rows(result) != 1:
                return None
            return session.get(OutboxMessage, row_id)

    def settle_outbox(
        self, row_id: int, now: datetime, keep_claim: bool = False, **fields: Any
    ) -> None:
        """Record a delivery attempt's outcome and give up the claim (unless ``keep_claim``)."""
        with self.session() as session:
            row = session.get(OutboxMessage, row_id)
            if row is not None:
                for name, value in fields.items():
                    setattr(row, name, value)
                row.updated_at = now
                if not keep_claim:
                    row.claimed_until = None

    def claim_telling_requester(self, card: str) -> str:
        """The requester's response_url, exactly once per card (empty if none or already told)."""
        with self.session() as session:
            result = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.card == card, OutboxMessage.told_requester.is_(False))
                .where(OutboxMessage.reply_url != "")
                .values(told_requester=True)
            )
            if _rows(result) != 1:
                return ""
            row = session.scalars(select(OutboxMessage).where(OutboxMessage.card == card)).first()
            return row.reply_url if row else ""

    def set_reply_url(self, card: str, url: str) -> None:
        with self.session() as session:
            session.execute(
                update(OutboxMessage).where(OutboxMessage.card == card).values(reply_url=url)
            )

    # -- rollback readiness: drills, the procedure and who read it ------------------------------

    def create_drill(self, now: datetime, **fields: Any) -> DrillRecord | None:
        """Record a drill; None when its ``slot`` is taken (another instance started it)."""
        record = DrillRecord(started_at=now, **fields)
        try:
            with self.session() as session:
                session.add(record)
        except IntegrityError:
            return None
        return record

    def update_drill(self, drill_id: str, **fields: Any) -> DrillRecord:
        with self.session() as session:
            record = session.get(DrillRecord, drill_id)
            if record is None:
                raise KeyError(drill_id)
            for name, value in fields.items():
                setattr(record, name, value)
        return record

    def drill(self, drill_id: str) -> DrillRecord | None:
        with self.session() as session:
            return session.get(DrillRecord, drill_id)

    def drill_of_operation(self, operation_id: str) -> DrillRecord | None:
        with self.session() as session:
            query = select(DrillRecord).where(DrillRecord.operation_id == operation_id)
            return session.scalars(query).first()

    def drills(
        self, service: str | None = None, outcomes: tuple[str, ...] = (), limit: int = 20
    ) -> list[DrillRecord]:
        """Newest first."""
        with self.session() as session:
            query = select(DrillRecord)
            if service:
                query = query.where(DrillRecord.service == service)
            if outcomes:
                query = query.where(DrillRecord.outcome.in_(outcomes))
            query = query.order_by(DrillRecord.started_at.desc(), DrillRecord.id).limit(limit)
            return list(session.scalars(query))

    def last_change(self, service: str) -> Operation | None:
        """The newest operation that left a revision at 100% of ``service``: a release, a
        rollback, a flag flip or a restore that succeeded, or one of them rolled back (a drill
        moves traffic through its own rollback)."""
        with self.session() as session:
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

    def hand_over_lock(self, service: str, from_operation: str, to_operation: str) -> bool:
        """Give the service's lock from one operation to another in one step (a drill hands
        the service to the rollback it starts); False when ``from_operation`` does not hold it."""
        with self.session() as session:
            result = session.execute(
                update(ServiceLock)
                .where(ServiceLock.service == service, ServiceLock.operation_id == from_operation)
                .values(operation_id=to_operation)
            )
            return _rows(result) == 1

    def record_procedure(self, version: str, posted_by: str, channel: str, now: datetime) -> None:
        try:
            with self.session() as session:
                session.add(
                    ProcedurePost(
                        version=version, posted_by=posted_by, channel=channel, posted_at=now
                    )
                )
        except IntegrityError:
            pass  # posted before: the acknowledgements of that version still count

    def procedure_posted(self, version: str) -> bool:
        with self.session() as session:
            return session.get(ProcedurePost, version) is not None

    def acknowledge(self, version: str, user: str, now: datetime) -> bool:
        """True for the user's first click on this version."""
        try:
            with self.session() as session:
                session.add(ProcedureAck(version=version, user_id=user, at=now))
        except IntegrityError:
            return False
        return True

    def acknowledgers(self, version: str) -> frozenset[str]:
        with self.session() as session:
            query = select(ProcedureAck.user_id).where(ProcedureAck.version == version)
            return frozenset(session.scalars(query))


def _outbox_row(
    card: str | None, channel: str, message: dict[str, Any], now: datetime, thread_of: str
) -> OutboxMessage:
    """A message the channel is owed, due now: a card (re-rendered in place) or a one-off post."""
    return OutboxMessage(
        card=card,
        channel=channel,
        thread_of=thread_of,
        message=message,
        due_at=now,
        created_at=now,
        updated_at=now,
    )
