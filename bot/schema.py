"""Runback's own tables are made and changed by the Alembic migrations in bot/migrations/.

- An empty database gets every table on first use (nothing to lose, nothing to ask): made from
  the models and recorded at the head revision, as Alembic's cookbook builds a database from
  scratch ("create_all, then stamp head"), without importing Alembic, which is most of a fresh
  process's start. tests/test_schema.py proves the tables match the migrations', name for name.
- A database at this code's revision is used as it is.
- An older one is changed only when asked (``python -m bot db upgrade``, ``serve --upgrade`` or
  ``RUNBACK_DB_UPGRADE=1``); otherwise ``SchemaError`` says what to run.
- One made by ``create_all`` before migrations existed (no version table) is recognised by its
  tables, stamped with the revision it matches, then upgraded like any other.

Every change runs in one transaction under a database lock (PostgreSQL: an advisory lock;
SQLite: ``BEGIN IMMEDIATE``), re-reading the revision once the lock is held, so instances that
start together change the schema once. Alembic is configured here, with no alembic.ini, so the
commands work from any directory; it is imported only when something must change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from bot.database import USAGE, database_problem, make_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
REVISION_LINE = re.compile(r'^revision = "([^"]+)"$', re.M)


def _revision_of(path: Path) -> str:
    """A migration file's ``revision = "..."`` line (NNNN, or NNNN_branch while branches wait to
    be chained), read without importing Alembic; else the NNNN of its name."""
    found = REVISION_LINE.search(path.read_text(encoding="utf-8"))
    return found.group(1) if found else path.name[:4]


# Files are named NNNN_what.py, in order; each revises the one before (tests/test_schema.py).
REVISIONS = tuple(sorted(_revision_of(p) for p in (MIGRATIONS / "versions").glob("[0-9]*.py")))
HEAD = REVISIONS[-1]
VERSION_TABLE = "alembic_version"
# The tables each revision added, to recognise what `create_all` made before migrations. Frozen:
# no database made without migrations can have a later revision's tables.
CREATE_ALL_ERA = (
    (
        "0001",
        frozenset(
            {
                "operations",
                "steps",
                "approvals",
                "timeline",
                "audit",
                "service_locks",
                "serving_history",
                "incidents",
            }
        ),
    ),
    ("0002", frozenset({"seen_requests", "slack_outbox"})),
    ("0003_migrel", frozenset({"revision_migrations", "release_candidates"})),
    ("0004_drill", frozenset({"drills", "procedure_posts", "procedure_acks"})),
)
ADVISORY_LOCK = 0x52554E42  # "RUNB"; paired with the schema's name, so schemas do not queue
UPGRADE_HINT = "run `python -m bot db upgrade` (or serve with --upgrade or RUNBACK_DB_UPGRADE=1)"


class SchemaError(Exception):
    """The database's tables are not the ones this code needs; the message says what to do."""


@dataclass(frozen=True)
class Found:
    """The revision a database is at: None when it has none of Runback's tables; ``recorded``
    False when it was made by ``create_all`` and its revision is read from its tables."""

    revision: str | None
    recorded: bool

    @property
    def current(self) -> bool:
        return self.recorded and self.revision == HEAD

    def describe(self) -> str:
        if self.revision is None:
            return "empty"
        made = "" if self.recorded else " (made by create_all, before migrations)"
        return f"at revision {self.revision}{made}"


def found_revision(connection: Connection) -> Found:
    """Read from Alembic's table, or, for a database made before migrations, from its tables."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables:
        revision = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        return Found(revision, recorded=True)
    matched, count = None, 0
    for revision, added in CREATE_ALL_ERA:
        if not added <= tables:
            break
        matched, count = revision, count + 1
    stray = tables & set().union(*(added for _, added in CREATE_ALL_ERA[count:]))
    if stray:
        raise SchemaError(
            f"the database has some of Runback's tables ({', '.join(sorted(stray))}) but not "
            "the others made with them; restore it from a backup or point DATABASE_URL at an "
            "empty database"
        )
    return Found(matched, recorded=False)


def ensure_schema(engine: Engine, models: MetaData, upgrade: bool = False) -> Found:
    """Make the database ready for this code, or raise SchemaError saying what to run. An empty
    database gets its tables (``models``: every table of this code's head revision); an older
    one is upgraded only when ``upgrade`` is true. Returns the revision the database was at."""
    with engine.connect() as connection:
        found = found_revision(connection)
    if found.current:
        return found
    _refuse_newer(found)
    if found.revision not in (None, HEAD) and not upgrade:
        raise SchemaError(
            f"the database is {found.describe()}, older than this Runback's revision {HEAD}; "
            f"{UPGRADE_HINT}"
        )
    return migrate(engine, models=models)


def migrate(engine: Engine, to: str = HEAD, models: MetaData | None = None) -> Found:
    """Bring the database to revision ``to`` under the lock; returns what it was before. An
    empty database brought to the head is made from ``models`` when they are given."""
    with _locked(engine) as connection:
        found = found_revision(connection)  # again: another instance may have done it meanwhile
        if found.recorded and found.revision == to:
            return found
        _refuse_newer(found)
        if found.revision is None and to == HEAD and models is not None:
            _create_at_head(connection, models)
            return found
        from alembic import command

        config = _config(connection)
        if found.revision is not None and not found.recorded:
            command.stamp(config, found.revision)
        command.upgrade(config, to)
    return found


def _create_at_head(connection: Connection, models: MetaData) -> None:
    """Every table from the models, and Alembic's version table at the head, as ``alembic stamp``
    makes it (same name, column and primary key)."""
    models.create_all(connection)
    connection.execute(
        text(
            f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
            f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    connection.execute(
        text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:head)"), {"head": HEAD}
    )


def _refuse_newer(found: Found) -> None:
    if found.revision is not None and found.revision not in REVISIONS:
        raise SchemaError(
            f"the database's tables are at revision {found.revision}, which this Runback "
            f"(at {HEAD}) does not know: a newer Runback upgraded it; run that version"
        )


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection  # env.py runs on it, inside our transaction
    return config


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the schema lock, committed on success."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            schema = "hashtext(coalesce(current_schema(), ''))"
            # a migration waits as long as the instance upgrading first (not store.DB_WAIT_S)
            connection.execute(text("SET LOCAL lock_timeout = 0"))
            connection.execute(
                text(f"SELECT pg_advisory_xact_lock(:key, {schema})"), {"key": ADVISORY_LOCK}
            )
            yield connection
            connection.commit()
        elif connection.dialect.name == "sqlite":
            with _sqlite_foreign_keys_off(connection):
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, now
                yield connection
                connection.commit()
        else:
            yield connection
            connection.commit()


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite's way to change a table is to copy it, which foreign keys forbid: they are off
    while migrations run, as https://www.sqlite.org/lang_altertable.html#otheralter says."""
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction
    try:
        yield
    finally:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def database_revision(url: str) -> Found:
    """The database's revision, changing nothing (not even creating a missing SQLite file);
    SchemaError when it cannot be read."""
    try:
        engine = make_engine(url)
    except ArgumentError:
        raise SchemaError(f"DATABASE_URL is not a database URL; {USAGE}") from None
    except (NoSuchModuleError, ImportError):
        raise SchemaError(f"that kind of database is unsupported; {USAGE}") from None
    path = make_url(url).database if engine.dialect.name == "sqlite" else None
    if path and not path.startswith("file:") and not Path(path).exists():
        engine.dispose()
        return Found(None, recorded=False)
    try:
        with engine.connect() as connection:
            return found_revision(connection)
    except SQLAlchemyError as error:
        raise SchemaError(database_problem(error)) from None
    finally:
        engine.dispose()
