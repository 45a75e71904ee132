"""Runback's own database stops answering for 12 s while a release takes its pre-deployment
backup (issue #21): the release goes on, on SQLite as on PostgreSQL.

The outage is a lock held by another connection (a migration or a dump holding the tables, say):
SQLite refused after its 5 s busy timeout and the step crashed the release, where PostgreSQL
waited for as long as it took. Both now wait the same bounded time, and a step that still meets
a database error is taken up again on a later tick rather than ending its operation."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from bot.database import make_engine
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from tests.helpers import wait_until
from tests.test_release_migrations import DROP, FLAG, IMAGE, SERVICE, latest, submit_form

# Past SQLite's old 5 s busy timeout, and short enough that the crash handler's write got in.
HOLD_S = 9


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def box(request: pytest.FixtureRequest) -> Sandbox:
    return request.getfixturevalue("sandbox" if request.param == "sqlite" else "pg_sandbox")


@pytest.fixture(params=BACKENDS)
def impatient_box(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The sandbox with a database wait shorter than the hold: the step meets the error."""
    monkeypatch.setattr("bot.database.DB_WAIT_S", 2)
    return request.getfixturevalue("sandbox" if request.param == "sqlite" else "pg_sandbox")


@contextmanager
def database_held(box: Sandbox, hold_s: float) -> Iterator[threading.Event]:
    """Another connection holds Runback's tables until the event is set (or hold_s pass)."""
    release, held = threading.Event(), threading.Event()
    url = box._settings.database_url

    def hold() -> None:
        if url.startswith("sqlite"):
            connection = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
            connection.execute("BEGIN EXCLUSIVE")
            connection.execute("UPDATE operations SET updated_at = updated_at")
            held.set()
            release.wait(hold_s)
            connection.rollback()
            connection.close()
            return
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.execute(text("LOCK TABLE operations IN ACCESS EXCLUSIVE MODE"))
            held.set()
            release.wait(hold_s)
        engine.dispose()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(10), "the lock was not taken"
    try:
        yield release
    finally:
        thread.join(30)


def test_a_release_goes_on_after_its_database_was_held_for_12_s(box: Sandbox) -> None:
    release_held_during_its_backup(box, HOLD_S)


def test_a_step_that_meets_a_database_error_resumes_rather_than_failing(
    impatient_box: Sandbox,
) -> None:
    """Held past the (shortened) wait: the step's commit fails; the database is back by the
    time a crash handler would write, which used to roll the release back."""
    release_held_during_its_backup(impatient_box, 4)


def release_held_during_its_backup(box: Sandbox, hold_s: float) -> None:
    box.run_line("as marta")
    box.run_line(f"/deploy {SERVICE} {IMAGE} --migration")
    submit_form(box, DROP, flag=FLAG)
    release = latest(box, "release")
    assert release is not None and release.state == "backing_up"
    # The step asks Cloud SQL (slowly) and is to commit the answer while the tables are held.
    box.emulator.router.faults.add(Fault("sql.operations.get", None, delay_ms=1000, times=1))
    box.clock.advance(180)  # the backup is done in Cloud SQL: the next tick looks
    wait_until(
        lambda: box.emulator.router.calls.list("sql.operations.get"),
        "the step's read",
        timeout_s=60,
    )
    with database_held(box, hold_s):
        pass

    def went_on() -> bool:
        state = latest(box, "release").state
        assert state not in ("failed", "rolling_back", "rolled_back"), latest(box, "release").data
        return state == "awaiting_approval"

    wait_until(went_on, "the release to go on past its backup", timeout_s=60)
    ended = latest(box, "release")
    assert ended.data["backup"]["status"] == "succeeded"
    assert ended.data.get("outcome") is None, ended.data.get("outcome")
