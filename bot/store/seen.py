"""Signed Slack requests already acted on (a replay finds its key), and the health check's
write."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.store.models import SeenRequest, new_id
from bot.store.repository import Repository


class SeenRequests(Repository):
    """``store.seen``."""

    def __init__(self, sessions: sessionmaker[Session], per_process: bool) -> None:
        """``per_process`` (SQLite): see ``first_sighting``."""
        super().__init__(sessions)
        # SQLite serves one process, and makes concurrent writers sleep and retry (1, 2, 5 …
        # 100 ms): a write per Slack request put hundreds of ms on acks. There, the keys of
        # reads are remembered in the process alone; those of requests that change something
        # go to the table too, so that a restart never forgets them. PostgreSQL, shared by
        # instances, remembers every key for all.
        self._seen_here: dict[str, datetime] | None = {} if per_process else None
        self._seen_lock = threading.Lock()

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
            with self._session() as session:
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
        with self._session() as session:
            session.execute(delete(SeenRequest).where(SeenRequest.expires_at < now))
            session.add(SeenRequest(key=f"health:{new_id()}{new_id()}", expires_at=now))
