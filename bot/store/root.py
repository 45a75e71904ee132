"""The store: one database, its schema checked at open, and a repository per aggregate. The
same code runs on SQLite and PostgreSQL.

Every repository method is one short transaction (bot/store/repository.py). What must change
two aggregates at once lives here, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from bot.database import Base, make_engine
from bot.schema import ensure_schema
from bot.store.approvals import Approvals, Decided
from bot.store.drills import Drills
from bot.store.incidents import Incidents
from bot.store.journal import Journal
from bot.store.models import ApprovalRequest
from bot.store.operations import Move, Operations, move_in
from bot.store.outbox import Outbox
from bot.store.procedure import Procedure
from bot.store.repository import rows
from bot.store.seen import SeenRequests
from bot.store.serving import Serving


class _Lost(Exception):
    """A conditional update in a multi-statement transaction lost its race: roll back."""


class Store:
    """The composition root: ``store.operations`` (with steps, leases and service locks),
    ``store.approvals``, ``store.journal`` (timeline and audit), ``store.serving``,
    ``store.incidents``, ``store.outbox``, ``store.drills``, ``store.procedure`` and
    ``store.seen``, sharing one engine and one session factory."""

    def __init__(self, url: str, upgrade: bool = False) -> None:
        """Open the database: an empty one gets its tables, an older one is upgraded only when
        ``upgrade`` (else bot.schema.SchemaError says what to run)."""
        self.engine = make_engine(url)
        try:
            self.schema_was = ensure_schema(self.engine, Base.metadata, upgrade=upgrade)
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        self.operations = Operations(self._sessions)
        self.approvals = Approvals(self._sessions)
        self.journal = Journal(self._sessions)
        self.serving = Serving(self._sessions)
        self.incidents = Incidents(self._sessions)
        self.outbox = Outbox(self._sessions)
        self.drills = Drills(self._sessions)
        self.procedure = Procedure(self._sessions)
        self.seen = SeenRequests(self._sessions, per_process=self.engine.dialect.name == "sqlite")

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- across aggregates, in one transaction -------------------------------------------------

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
                if rows(won) != 1 or not move_in(session, move, now):
                    raise _Lost
        except _Lost:
            return False
        return True
