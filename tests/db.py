"""Database backends for the store tests: a SQLite file, and PostgreSQL when it is available.

PostgreSQL comes from ``DATABASE_URL_POSTGRES`` (CI sets it; locally ``scripts/postgres.sh``
prints one). Without it the PostgreSQL cases are skipped, except under ``CI=true``, where a
missing PostgreSQL is a failure: CI must prove the store works on it.

Each PostgreSQL test gets a schema of its own (``search_path`` set through the URL), so tests
never see each other's rows and several test runs may share one server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text

from bot.database import make_engine
from bot.store import Store

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def postgres_url() -> str:
    url = os.environ.get("DATABASE_URL_POSTGRES", "").strip()
    if url:
        return url
    message = "DATABASE_URL_POSTGRES is not set (start one with scripts/postgres.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must run the store tests on PostgreSQL", pytrace=False)
    pytest.skip(message)


def _with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def postgres_schema(prefix: str = "runback_test") -> Iterator[str]:
    """The URL of a new, empty PostgreSQL schema (named ``prefix`` and a random suffix, so a
    leftover one says which tests made it), dropped with all it holds afterwards."""
    url = postgres_url()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield _with_search_path(url, schema)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@contextmanager
def postgres_store() -> Iterator[Store]:
    with postgres_schema() as url:
        store = Store(url)
        try:
            yield store
        finally:
            store.close()


@contextmanager
def sqlite_store(directory: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{directory / 'runback.db'}")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def open_store(backend: str, directory: Path) -> Iterator[Store]:
    if backend == "postgresql":
        with postgres_store() as store:
            yield store
    else:
        with sqlite_store(directory) as store:
            yield store


@contextmanager
def empty_database(backend: str, directory: Path) -> Iterator[str]:
    """The URL of an empty database on ``backend``."""
    if backend == "postgresql":
        with postgres_schema() as url:
            yield url
    else:
        yield f"sqlite:///{directory / 'runback.db'}"
