"""The drill history: every rollback drill, and the scheduled ones that were missed."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.exc import IntegrityError

from bot.store.models import DrillRecord
from bot.store.repository import Repository


class Drills(Repository):
    """``store.drills``."""

    def create_drill(self, now: datetime, **fields: Any) -> DrillRecord | None:
        """Record a drill; None when its ``slot`` is taken (another instance started it)."""
        record = DrillRecord(started_at=now, **fields)
        try:
            with self._session() as session:
                session.add(record)
        except IntegrityError:
            return None
        return record

    def update_drill(self, drill_id: str, **fields: Any) -> DrillRecord:
        with self._session() as session:
            record = session.get(DrillRecord, drill_id)
            if record is None:
                raise KeyError(drill_id)
            for name, value in fields.items():
                setattr(record, name, value)
        return record

    def drill(self, drill_id: str) -> DrillRecord | None:
        with self._session() as session:
            return session.get(DrillRecord, drill_id)

    def drill_of_operation(self, operation_id: str) -> DrillRecord | None:
        with self._session() as session:
            query = select(DrillRecord).where(DrillRecord.operation_id == operation_id)
            return session.scalars(query).first()

    def drills(
        self, service: str | None = None, outcomes: tuple[str, ...] = (), limit: int = 20
    ) -> list[DrillRecord]:
        """Newest first."""
        with self._session() as session:
            query = _drills_query(bool(service), tuple(outcomes), limit)
            return list(session.scalars(query, {"service": service}))


@functools.cache
def _drills_query(by_service: bool, outcomes: tuple[str, ...], limit: int) -> Select[Any]:
    """Built once per shape: the schedule reads the newest counted drill on every tick."""
    query = select(DrillRecord)
    if by_service:
        query = query.where(DrillRecord.service == bindparam("service"))
    if outcomes:
        query = query.where(DrillRecord.outcome.in_(outcomes))
    return query.order_by(DrillRecord.started_at.desc(), DrillRecord.id).limit(limit)
