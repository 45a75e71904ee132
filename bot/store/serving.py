"""The serving history: revisions Runback saw (or made) serve 100%, and those rolled back
from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from bot.store.models import ServingHistory
from bot.store.repository import Repository


class Serving(Repository):
    """``store.serving``."""

    def record_serving(
        self, service: str, revision: str, kind: str, now: datetime, operation_id: str = ""
    ) -> None:
        with self._session() as session:
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
        with self._session() as session:
            rows = session.execute(
                select(ServingHistory.revision, ServingHistory.kind)
                .where(ServingHistory.service == service)
                .order_by(ServingHistory.id.desc())
            )
            return [(revision, kind) for revision, kind in rows]

    def _history(self, service: str, kind: str) -> list[str]:
        with self._session() as session:
            rows = session.scalars(
                select(ServingHistory.revision)
                .where(ServingHistory.service == service, ServingHistory.kind == kind)
                .order_by(ServingHistory.id.desc())
            )
            return list(dict.fromkeys(rows))
