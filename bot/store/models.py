"""The tables: every row Runback keeps, on SQLite and PostgreSQL alike (the repositories beside
this module read and write them; bot/migrations changes them)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, Mapper, mapped_column

# The migration records' tables share the store's Base, so Alembic and the schema see them.
import bot.store_migrations  # noqa: F401
from bot.database import Base


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


DATA_SEQ = "seq"  # the key in an operation's data that counts its conditional writes


def data_seq(operation: Operation) -> int:
    """How many conditional writes (``Move.from_seq``) an operation's data has seen."""
    return int((operation.data or {}).get(DATA_SEQ) or 0)
