"""What happened, append-only: each operation's timeline and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot.store.models import AuditRecord, TimelineEvent
from bot.store.repository import Repository


class Journal(Repository):
    """``store.journal``: the timeline of an operation, and the audit records."""

    def add_event(
        self, operation_id: str, now: datetime, kind: str, actor: str = "", **data: Any
    ) -> None:
        with self._session() as session:
            session.add(
                TimelineEvent(operation_id=operation_id, at=now, kind=kind, actor=actor, data=data)
            )

    def timeline(self, operation_id: str) -> list[TimelineEvent]:
        with self._session() as session:
            query = select(TimelineEvent).where(TimelineEvent.operation_id == operation_id)
            return list(session.scalars(query.order_by(TimelineEvent.id)))

    def add_audit(self, record: AuditRecord) -> int:
        with self._session() as session:
            session.add(record)
            session.flush()
            return record.id

    def audit_record(self, record_id: int) -> AuditRecord | None:
        with self._session() as session:
            return session.get(AuditRecord, record_id)

    def audit(self, limit: int = 1000) -> list[AuditRecord]:
        with self._session() as session:
            return list(session.scalars(select(AuditRecord).order_by(AuditRecord.id).limit(limit)))
