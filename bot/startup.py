"""What a process does with its database before it serves: open the store (DATABASE_URL checked,
the schema made or upgraded as asked) and ``python -m bot db upgrade|current``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from bot.database import USAGE, database_problem
from bot.schema import HEAD, SchemaError, database_revision
from bot.store import Store


class StartupError(Exception):
    """Runback cannot start as configured; the message is one line that says what to fix."""


def open_store(url: str, upgrade: bool = False) -> Store:
    """The store, ready for writes, or a StartupError naming what is wrong with DATABASE_URL
    (an older schema among them, unless ``upgrade``: see bot/schema.py)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StartupError(f"DATABASE_URL is not a database URL; {USAGE}") from None
    shown = url if parsed.password is None else parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StartupError(
            f"DATABASE_URL={shown} is an empty in-memory database that forgets everything; {USAGE}"
        )
    try:
        store = Store(url, upgrade=upgrade)
    except SchemaError as error:
        raise StartupError(f"DATABASE_URL={shown}: {error}") from None
    except (NoSuchModuleError, ImportError):
        unsupported = f"DATABASE_URL={shown}: that kind of database is unsupported; {USAGE}"
        raise StartupError(unsupported) from None
    except SQLAlchemyError as error:
        raise StartupError(f"DATABASE_URL={shown}: {database_problem(error)}") from None
    try:
        store.seen.check_writable(datetime.now(UTC))
    except SQLAlchemyError as error:
        store.close()
        raise StartupError(f"DATABASE_URL={shown}: {database_problem(error)}") from None
    return store


def run_db_command(action: str, url: str) -> int:
    """``python -m bot db upgrade|current``: one line on stdout, or one on stderr and exit 2
    (``current`` exits 1 when an upgrade is due, for deploy scripts)."""
    if action == "upgrade":
        try:
            store = open_store(url, upgrade=True)
        except StartupError as error:
            print(f"runback: {error}", file=sys.stderr)
            return 2
        store.close()
        was = store.schema_was
        done = "is already at" if was.current else f"was {was.describe()}, now at"
        print(f"runback: the database {done} revision {HEAD}")
        return 0
    try:
        found = database_revision(url)
    except SchemaError as error:
        print(f"runback: {error}", file=sys.stderr)
        return 2
    if found.current:
        print(f"runback: the database is at revision {HEAD}, as this Runback needs")
        return 0
    print(f"runback: the database is {found.describe()}; this Runback needs revision {HEAD}")
    return 1
