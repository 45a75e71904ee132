"""Durable records of migrations: each revision's migration verdict, and release candidates
(an image and its migration, registered by CI or attached in Slack before ``/deploy``).

Kept beside bot/store/, on the ``Base`` of bot/database.py that its tables share (so Alembic
and the schema test see them); every function is one short transaction on the store's engine.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.database import Base


class Store(Protocol):
    """What these records need of bot.store.Store: one transaction at a time."""

    def session(self) -> AbstractContextManager[Session]: ...


class RevisionMigration(Base):
    """The migration a revision shipped with, as Runback judged it when it deployed it."""

    __tablename__ = "revision_migrations"
    __table_args__ = (UniqueConstraint("service", "revision"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    revision: Mapped[str] = mapped_column(String(128))
    verdict: Mapped[str] = mapped_column(String(16))  # none | additive | destructive | unknown
    feature_flag: Mapped[str] = mapped_column(String(128), default="")
    dialect: Mapped[str] = mapped_column(String(16), default="")
    source: Mapped[str] = mapped_column(String(16), default="")  # ci | slack | ""
    commit: Mapped[str] = mapped_column(String(64), default="")
    statements: Mapped[list[Any]] = mapped_column(JSON, default=list)  # each statement
    operation_id: Mapped[str] = mapped_column(String(32), default="")
    recorded_at: Mapped[datetime]


class ReleaseCandidate(Base):
    """An image and its migration, registered before the release (``POST /ci/releases``, or
    the ``/deploy --migration`` form): ``/deploy`` finds the newest one by service and image."""

    __tablename__ = "release_candidates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    image: Mapped[str] = mapped_column(String(512))
    commit: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(16))  # ci | slack
    registered_by: Mapped[str] = mapped_column(String(32), default="")
    dialect: Mapped[str] = mapped_column(String(16))
    migration_sql: Mapped[str] = mapped_column(Text, default="")
    feature_flag: Mapped[str] = mapped_column(String(128), default="")
    verdict: Mapped[str] = mapped_column(String(16))
    statements: Mapped[list[Any]] = mapped_column(JSON, default=list)
    registered_at: Mapped[datetime]


@dataclass(frozen=True)
class MigrationRecord:
    """A revision's recorded verdict, as plain data."""

    service: str
    revision: str
    verdict: str
    feature_flag: str
    statements: tuple[dict[str, Any], ...]
    recorded_at: datetime
    operation_id: str = ""


def record_revision_migration(store: Store, now: datetime, **fields: Any) -> None:
    """Record (or correct) the verdict of ``fields['revision']``: one row per revision."""
    with store.session() as session:
        query = select(RevisionMigration).where(
            RevisionMigration.service == fields["service"],
            RevisionMigration.revision == fields["revision"],
        )
        row = session.scalars(query).first()
        if row is None:
            session.add(RevisionMigration(recorded_at=now, **fields))
            return
        for name, value in fields.items():
            setattr(row, name, value)
        row.recorded_at = now


def revision_migrations(store: Store, service: str) -> list[MigrationRecord]:
    with store.session() as session:
        query = select(RevisionMigration).where(RevisionMigration.service == service)
        return [_record(row) for row in session.scalars(query.order_by(RevisionMigration.id))]


def revision_migration(store: Store, service: str, revision: str) -> MigrationRecord | None:
    return next((r for r in revision_migrations(store, service) if r.revision == revision), None)


def _record(row: RevisionMigration) -> MigrationRecord:
    return MigrationRecord(
        service=row.service,
        revision=row.revision,
        verdict=row.verdict,
        feature_flag=row.feature_flag,
        statements=tuple(row.statements or ()),
        recorded_at=row.recorded_at,
        operation_id=row.operation_id,
    )


def add_candidate(store: Store, now: datetime, **fields: Any) -> ReleaseCandidate:
    candidate = ReleaseCandidate(registered_at=now, **fields)
    with store.session() as session:
        session.add(candidate)
    return candidate


def image_candidates(store: Store, service: str, image: str) -> list[ReleaseCandidate]:
    """Every registration of exactly this image for this service, newest first."""
    with store.session() as session:
        query = select(ReleaseCandidate).where(
            ReleaseCandidate.service == service, ReleaseCandidate.image == image
        )
        return list(session.scalars(query.order_by(ReleaseCandidate.id.desc())))


def candidates(store: Store) -> list[ReleaseCandidate]:
    with store.session() as session:
        return list(session.scalars(select(ReleaseCandidate).order_by(ReleaseCandidate.id)))
