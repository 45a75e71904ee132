"""The rollback procedure: the versions posted for the team, and who acknowledged each."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.store.models import ProcedureAck, ProcedurePost
from bot.store.repository import Repository


class Procedure(Repository):
    """``store.procedure``."""

    def record_procedure(self, version: str, posted_by: str, channel: str, now: datetime) -> None:
        try:
            with self._session() as session:
                session.add(
                    ProcedurePost(
                        version=version, posted_by=posted_by, channel=channel, posted_at=now
                    )
                )
        except IntegrityError:
            pass  # posted before: the acknowledgements of that version still count

    def procedure_posted(self, version: str) -> bool:
        with self._session() as session:
            return session.get(ProcedurePost, version) is not None

    def acknowledge(self, version: str, user: str, now: datetime) -> bool:
        """True for the user's first click on this version."""
        try:
            with self._session() as session:
                session.add(ProcedureAck(version=version, user_id=user, at=now))
        except IntegrityError:
            return False
        return True

    def acknowledgers(self, version: str) -> frozenset[str]:
        with self._session() as session:
            query = select(ProcedureAck.user_id).where(ProcedureAck.version == version)
            return frozenset(session.scalars(query))
