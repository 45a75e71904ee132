"""Text that passed validation fits the columns on PostgreSQL exactly as on SQLite: NUL
characters are dropped and over-long values cut, never a database error ("Something went
wrong"). Also: replayed Slack requests are remembered across instances sharing a database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.sandbox.console import Sandbox
from bot.store import AuditRecord, Store
from tests.db import BACKENDS, open_store, postgres_store

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, tmp_path) as opened:
        yield opened


def test_long_and_nul_text_fits_every_column(store: Store) -> None:
    operation = store.operations.create_operation(
        T0,
        kind="rollback",
        service="s" * 300,
        state="pending",
        requested_by="U" * 100,
        channel="C" * 100,
        reason="because\x00 of " + "x" * 10_000,
        from_revision="r\x00" * 300,
        data={"note": "nul \x00 inside"},
    )
    stored = store.operations.operation(operation.id)
    assert stored is not None
    assert stored.service == "s" * 64 and stored.requested_by == "U" * 32
    assert stored.reason.startswith("because of ") and len(stored.reason) == 10_011
    assert stored.from_revision == "r" * 128
    assert stored.data == {"note": "nul \x00 inside"}, "JSON keeps it, escaped"
    store.operations.update_operation(operation.id, T0, to_revision="t\x00" * 500)
    assert store.operations.operation(operation.id).to_revision == "t" * 128  # type: ignore[union-attr]


def test_long_and_nul_text_fits_incidents_and_audit(store: Store) -> None:
    record, created = store.incidents.create_incident(
        T0,
        external_id="i" * 400,
        service="svc\x00" * 40,
        revision="rev" * 100,
        state="open",
        alert={"summary": "a\x00b"},
    )
    assert created and store.incidents.incident(record.id).service == "svc" * 21 + "s"  # type: ignore[union-attr]
    store.journal.add_audit(
        AuditRecord(
            at=T0,
            actor="a" * 100,
            action="x" * 100,
            outcome="o\x00k",
            service="s" * 100,
            revision="r" * 200,
            detail={"why": "nul\x00"},
        )
    )
    audit = store.journal.audit()[-1]
    assert audit.actor == "a" * 32 and audit.outcome == "ok" and audit.revision == "r" * 128


def test_a_replayed_key_is_refused(store: Store) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=10)
    assert store.seen.first_sighting("k1", expires) is True
    assert store.seen.first_sighting("k1", expires) is False
    assert store.seen.first_sighting("k2", expires) is True


def test_a_key_that_changes_state_outlives_a_restart_a_reads_key_stays_in_memory(
    store: Store,
) -> None:
    """The store reopened on the same database is the process restarted (issue #22)."""
    expires = datetime.now(UTC) + timedelta(minutes=10)
    assert store.seen.first_sighting("click", expires) is True
    assert store.seen.first_sighting("read", expires, durable=False) is True
    assert store.seen.first_sighting("read", expires, durable=False) is False
    restarted = Store(store.engine.url.render_as_string(hide_password=False))
    try:
        assert restarted.seen.first_sighting("click", expires) is False, "never acted on twice"
        if restarted.engine.dialect.name == "sqlite":  # no write per read on SQLite
            assert restarted.seen.first_sighting("read", expires, durable=False) is True
    finally:
        restarted.close()


@pytest.mark.postgres
def test_a_replayed_key_is_refused_by_every_instance_sharing_postgresql() -> None:
    """Instances share PostgreSQL (SQLite serves one process, which remembers keys itself)."""
    expires = datetime.now(UTC) + timedelta(minutes=10)
    with postgres_store() as store:
        other = Store(str(store.engine.url.render_as_string(hide_password=False)))
        try:
            assert store.seen.first_sighting("k1", expires) is True
            assert other.seen.first_sighting("k1", expires) is False
            assert store.seen.first_sighting("k1", expires) is False
            assert other.seen.first_sighting("k2", expires) is True
        finally:
            other.close()


@pytest.mark.postgres
def test_expired_keys_are_forgotten_by_the_health_check() -> None:
    now = datetime.now(UTC)
    with postgres_store() as store:
        assert store.seen.first_sighting("old", now - timedelta(seconds=1))
        store.seen.check_writable(now)
        assert store.seen.first_sighting("old", now + timedelta(minutes=10)) is True


# -- end to end on PostgreSQL: a command whose text holds a NUL --------------------------------


@pytest.mark.postgres
def test_a_reason_with_a_nul_character_rolls_back_on_postgresql(pg_sandbox: Sandbox) -> None:
    pg_sandbox.run_line("as ana")
    output = "\n".join(pg_sandbox.run_line("/rollback wa-backend disk\x00full " + "z" * 3000))
    assert "Something went wrong" not in output
    pg_sandbox.runtime.engine.wait_idle()
    rows = pg_sandbox.emulator.cloudrun.traffic("wa-backend")
    assert {r["revision"]: r["percent"] for r in rows if r["percent"]} == {"wa-backend-00002": 100}
