"""Incidents: one per alert id, and what Runback did about it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.store.models import IncidentRecord
from bot.store.repository import Repository, rows

# Read on every tick (and at every step of the sandbox's `wait`): built once.
OPEN = (
    select(IncidentRecord)
    .where(IncidentRecord.state.in_(("open", "mitigated")))
    .order_by(IncidentRecord.received_at)
)


class Incidents(Repository):
    """``store.incidents``."""

    def create_incident(self, now: datetime, **fields: Any) -> tuple[IncidentRecord, bool]:
        """Insert the incident, or return the one already recorded for its alert id."""
        record = IncidentRecord(received_at=now, updated_at=now, **fields)
        try:
            with self._session() as session:
                session.add(record)
        except IntegrityError:
            existing = self.incident_by_alert(fields["external_id"])
            assert existing is not None
            return existing, False
        return record, True

    def incident(self, incident_id: str) -> IncidentRecord | None:
        with self._session() as session:
            return session.get(IncidentRecord, incident_id)

    def incident_by_alert(self, external_id: str) -> IncidentRecord | None:
        with self._session() as session:
            query = select(IncidentRecord).where(IncidentRecord.external_id == external_id)
            return session.scalars(query).first()

    def update_incident(self, incident_id: str, now: datetime, **fields: Any) -> IncidentRecord:
        with self._session() as session:
            record = session.get(IncidentRecord, incident_id)
            if record is None:
                raise KeyError(incident_id)
            for name, value in fields.items():
                setattr(record, name, value)
            record.updated_at = now
        return record

    def remember_message_ts(self, incident_id: str, ts: str, now: datetime) -> bool:
        """Store the ts of its card unless it is the one stored already (one statement)."""
        return self._remember_message_ts(IncidentRecord, incident_id, ts, now)

    def open_incidents(self, service: str | None = None) -> list[IncidentRecord]:
        """Incidents not yet resolved (open or mitigated), oldest first."""
        with self._session() as session:
            if service is None:  # on every tick
                return list(session.scalars(OPEN))
            query = OPEN.where(IncidentRecord.service == service)
            return list(session.scalars(query))

    def claim_incident(
        self, incident_id: str, seen_updated_at: datetime, now: datetime, data: dict[str, Any]
    ) -> bool:
        """Write ``data`` only if the incident is as last seen (compare-and-set on
        ``updated_at``): of two checks that read it at once (two ticks, two instances), one
        goes on; the other finds it moved."""
        with self._session() as session:
            result = session.execute(
                update(IncidentRecord)
                .where(
                    IncidentRecord.id == incident_id,
                    IncidentRecord.updated_at == seen_updated_at,
                )
                .values(updated_at=now, data=data)
            )
            return rows(result) == 1

    def claim_postmortem(
        self, incident_id: str, from_state: str = "", to_state: str = "claimed"
    ) -> bool:
        """True exactly once per incident: whoever wins posts the postmortem (from "" to
        "claimed"), or its update with the numbers after mitigation (from "posted")."""
        with self._session() as session:
            result = session.execute(
                update(IncidentRecord)
                .where(IncidentRecord.id == incident_id, IncidentRecord.postmortem == from_state)
                .values(postmortem=to_state)
            )
            return rows(result) == 1
