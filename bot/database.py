"""The database under the store: one engine per URL, the same waits on SQLite and PostgreSQL,
the declarative base every table shares, and what to tell a person whose DATABASE_URL fails.

Nothing here knows Runback's tables or schema revisions (bot/store/, bot/schema.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, TypeDecorator, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import InternalError, OperationalError
from sqlalchemy.orm import DeclarativeBase

USAGE = "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DATABASE"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes in, timezone-aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


# How long a statement waits for a database that another connection holds (a migration, a
# dump, a writer) before it fails, the same on both backends. SQLite gave up after 5 s where
# PostgreSQL waited for ever, so the same 12 s hold failed a release on SQLite only.
DB_WAIT_S = 20
# What a database that does not answer (locked past DB_WAIT_S, read-only, unreachable) raises.
UNAVAILABLE = (OperationalError, InternalError)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # the wait first: switching to WAL needs the lock an instance making the schema holds
    cursor.execute(f"PRAGMA busy_timeout={DB_WAIT_S * 1000}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


POSTGRES_SCHEMES = ("postgresql://", "postgres://")  # the second, Heroku's, is common too


def make_engine(url: str) -> Engine:
    for scheme in POSTGRES_SCHEMES:
        if url.startswith(scheme):
            url = "postgresql+psycopg://" + url.removeprefix(scheme)
    if url.startswith("sqlite"):
        arguments = {"check_same_thread": False, "timeout": DB_WAIT_S}
        engine = create_engine(url, connect_args=arguments)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    parsed = make_url(url)  # a lock_timeout beside any options the URL has (search_path, say)
    options = f"{parsed.query.get('options', '')} -c lock_timeout={DB_WAIT_S * 1000}".strip()
    return create_engine(parsed.update_query_dict({"options": options}), pool_pre_ping=True)


def database_problem(error: Exception) -> str:
    """One line for a person: what a database error says is wrong with DATABASE_URL."""
    cause = str(getattr(error, "orig", error)).strip()
    if "readonly" in cause or "read-only" in cause:
        return "the database is read-only; Runback must write to it"
    if "unable to open database file" in cause:
        return "cannot open the SQLite file (does its directory exist? may Runback write there?)"
    # psycopg says what failed (password, unknown role or database, no server) on one line
    lines = [line.strip() for line in cause.splitlines() if line.strip()]
    reason = next((line for line in lines if "FATAL" in line), lines[0] if lines else "")
    return f"cannot use the database: {reason}"
