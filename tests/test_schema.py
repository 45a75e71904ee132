"""Runback's own tables are made and upgraded by the Alembic migrations in bot/migrations: a
database holding data is upgraded to head on SQLite and PostgreSQL, an older schema stops
`serve` with one line unless it is asked to upgrade, and the models never drift from the
head migration."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Engine

from bot import schema
from bot.database import Base, make_engine
from bot.sandbox.emulator.server import Emulator
from bot.schema import HEAD, REVISIONS, Found, SchemaError, found_revision
from bot.store import Store
from tests.db import BACKENDS, empty_database
from tests.helpers import free_port, wait_until
from tests.test_startup import one_clear_line

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def engine(database: str) -> Iterator[Engine]:
    engine = make_engine(database)
    try:
        yield engine
    finally:
        engine.dispose()


def revision_of(engine: Engine) -> Found:
    with engine.connect() as connection:
        return found_revision(connection)


def fill_first_revision(engine: Engine) -> None:
    """Rows as the last release wrote them, through the tables as they were (not the models)."""
    tables = MetaData()
    with engine.begin() as connection:
        tables.reflect(connection)
        connection.execute(
            tables.tables["operations"].insert(),
            {
                "id": "op1",
                "kind": "rollback",
                "service": "wa-backend",
                "state": "awaiting_approval",
                "requested_by": "U0ANA",
                "channel": "C0INCIDENTS",
                "reason": "errores 5xx",
                "emergency": False,
                "from_revision": "wa-backend-00003",
                "to_revision": "wa-backend-00002",
                "data": {"images": ["europe-docker.pkg.dev/p/r/wa@sha256:ab"]},
                "cloud_operation": "",
                "message_ts": "1709371800.000100",
                "lease_owner": "",
                "lease_until": None,
                "created_at": T0,
                "updated_at": T0,
                "finished_at": None,
            },
        )
        connection.execute(
            tables.tables["approvals"].insert(),
            {
                "id": "ap1",
                "operation_id": "op1",
                "action": "rollback",
                "requested_by": "U0ANA",
                "status": "pending",
                "decided_by": "",
                "decided_at": None,
                "expires_at": T0 + timedelta(minutes=30),
                "created_at": T0,
            },
        )
        connection.execute(
            tables.tables["audit"].insert(),
            [
                {
                    "at": T0 + timedelta(seconds=second),
                    "actor": "U0ANA",
                    "action": action,
                    "outcome": "ok",
                    "service": "wa-backend",
                    "revision": "wa-backend-00002",
                    "operation_id": "op1",
                    "detail": {"n": second},
                }
                for second, action in enumerate(("rollback.requested", "approval.requested"))
            ],
        )


def check_data_survived(store: Store) -> None:
    operation = store.operations.operation("op1")
    assert operation is not None
    assert (operation.state, operation.to_revision) == ("awaiting_approval", "wa-backend-00002")
    assert operation.data == {"images": ["europe-docker.pkg.dev/p/r/wa@sha256:ab"]}
    assert operation.created_at == T0 and operation.reason == "errores 5xx"
    approval = store.approvals.approval("ap1")
    assert approval is not None and approval.status == "pending"
    assert approval.expires_at == T0 + timedelta(minutes=30)
    audit = store.journal.audit()
    assert [(a.action, a.detail) for a in audit] == [
        ("rollback.requested", {"n": 0}),
        ("approval.requested", {"n": 1}),
    ]
    # old rows keep working with today's code
    assert store.approvals.decide_approval("ap1", "approved", "U0LEAD", T0 + timedelta(minutes=1))


def check_new_tables_work(store: Store) -> None:
    assert store.seen.first_sighting("req-1", T0 + timedelta(minutes=5)) is True
    assert store.seen.first_sighting("req-1", T0 + timedelta(minutes=5)) is False
    store.outbox.stage_card("op:op1", "C0INCIDENTS", {"text": "rollback"}, T0)
    store.outbox.stage_card("op:op1", "C0INCIDENTS", {"text": "rollback, approved"}, T0)
    row = store.outbox.outbox_row("op:op1")
    assert row is not None and row.version == 2 and row.message == {"text": "rollback, approved"}
    assert [r.card for r in store.outbox.due_outbox(T0)] == ["op:op1"]


# -- the migrations ------------------------------------------------------------------------------


def test_the_migration_files_are_named_after_their_revisions_in_order() -> None:
    script = ScriptDirectory(str(schema.MIGRATIONS))
    chain = list(reversed(list(script.walk_revisions())))
    assert all(Path(r.path).name.startswith(f"{r.revision[:4]}_") for r in chain)
    assert [r.revision[:4] for r in chain] == [f"{n:04d}" for n in range(1, len(chain) + 1)]
    assert [r.revision for r in chain] == list(REVISIONS) and REVISIONS[0] == "0001"
    assert script.get_heads() == [HEAD]


def test_the_models_and_the_head_migration_agree(engine: Engine) -> None:
    """Made by the migrations alone, the tables are what the models say: a model changed
    without its migration fails here."""
    assert schema.migrate(engine) == Found(None, recorded=False)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        if engine.dialect.name == "postgresql":  # Alembic's table lives in the test's schema
            where = "table_name = 'alembic_version' AND table_schema = current_schema()"
            query = f"SELECT count(*) FROM information_schema.tables WHERE {where}"
            assert connection.execute(text(query)).scalar() == 1
    assert revision_of(engine) == Found(HEAD, recorded=True)


def described(engine: Engine) -> dict[str, object]:
    """Every table as the database describes it: columns (type, nullable, default), primary
    key, foreign keys, unique constraints and indexes, each with its name, and the revision."""
    inspector = inspect(engine)
    tables: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        columns = [
            (c["name"], str(c["type"]), c["nullable"], c.get("default"))
            for c in inspector.get_columns(table)
        ]
        tables[table] = {
            "columns": columns,
            "primary_key": inspector.get_pk_constraint(table),
            "foreign_keys": sorted(inspector.get_foreign_keys(table), key=repr),
            "unique": sorted(inspector.get_unique_constraints(table), key=repr),
            "indexes": sorted(inspector.get_indexes(table), key=repr),
        }
    return {"tables": tables, "revision": revision_of(engine)}


def test_an_empty_database_made_from_the_models_is_the_one_the_migrations_make(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A fresh database is made from the models without Alembic (most of a new process's
    start); it must be the migrations' database name for name, so later migrations find every
    column, constraint and index they name."""
    other_directory = tmp_path / "other"
    other_directory.mkdir()
    with empty_database(request.node.callspec.params["database"], other_directory) as other:
        migrated, made = make_engine(database), make_engine(other)
        try:
            assert schema.migrate(migrated) == Found(None, recorded=False)
            assert schema.ensure_schema(made, Base.metadata) == Found(None, recorded=False)
            assert described(made) == described(migrated)
            assert revision_of(made) == Found(HEAD, recorded=True)
        finally:
            migrated.dispose()
            made.dispose()


def test_a_database_with_data_at_the_first_revision_is_upgraded_to_head(
    engine: Engine, database: str
) -> None:
    schema.migrate(engine, to="0001")
    fill_first_revision(engine)
    with pytest.raises(SchemaError, match=r"at revision 0001, .*python -m bot db upgrade"):
        Store(database)
    assert revision_of(engine) == Found("0001", recorded=True), "a refusal changes nothing"

    store = Store(database, upgrade=True)
    try:
        assert store.schema_was == Found("0001", recorded=True)
        assert revision_of(engine) == Found(HEAD, recorded=True)
        check_data_survived(store)
        check_new_tables_work(store)
    finally:
        store.close()


def test_a_database_made_by_create_all_before_migrations_is_stamped_then_upgraded(
    engine: Engine, database: str
) -> None:
    schema.migrate(engine, to="0001")
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    fill_first_revision(engine)
    assert revision_of(engine) == Found("0001", recorded=False)
    with pytest.raises(SchemaError, match="made by create_all, before migrations"):
        Store(database)

    store = Store(database, upgrade=True)
    try:
        assert revision_of(engine) == Found(HEAD, recorded=True)
        check_data_survived(store)
        check_new_tables_work(store)
    finally:
        store.close()


def test_a_create_all_database_with_todays_tables_is_stamped_then_upgraded(
    engine: Engine, database: str
) -> None:
    """Its tables say the last revision that added tables; the revisions after it change data
    only (0005: release data), which its rows may need: upgraded only when asked."""
    Store(database).close()
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    last_tables = schema.CREATE_ALL_ERA[-1][0]
    with pytest.raises(SchemaError, match=rf"at revision {last_tables} \(made by create_all"):
        Store(database)
    store = Store(database, upgrade=True)
    try:
        assert store.schema_was == Found(last_tables, recorded=False)
        assert revision_of(engine) == Found(HEAD, recorded=True)
        check_new_tables_work(store)
    finally:
        store.close()


def test_a_database_with_half_of_a_revisions_tables_is_refused(
    engine: Engine, database: str
) -> None:
    Store(database).close()
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text("DROP TABLE slack_outbox"))
    with pytest.raises(
        SchemaError, match=r"some of Runback's tables \([a-z_, ]*seen_requests[a-z_, ]*\)"
    ):
        Store(database, upgrade=True)


def test_a_schema_newer_than_the_code_is_refused_even_when_upgrading(
    engine: Engine, database: str
) -> None:
    Store(database).close()
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(SchemaError, match=r"0999, which this Runback .* does not know"):
        Store(database, upgrade=True)


@pytest.mark.parametrize("start", ["empty", "0001"])
def test_instances_starting_together_change_the_schema_once(database: str, start: str) -> None:
    engines = [make_engine(database) for _ in range(3)]
    try:
        if start == "0001":
            schema.migrate(engines[0], to="0001")
            fill_first_revision(engines[0])
        together = threading.Barrier(len(engines))
        seen: list[Found] = []

        def start_instance(engine: Engine) -> None:
            together.wait()
            seen.append(schema.ensure_schema(engine, Base.metadata, upgrade=True))

        threads = [threading.Thread(target=start_instance, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        before = Found(None if start == "empty" else "0001", recorded=start != "empty")
        # one instance upgraded; the others found it done (under the lock, or before taking it)
        assert sorted(seen, key=lambda f: f.current) == [before] + [Found(HEAD, True)] * 2
        assert revision_of(engines[0]) == Found(HEAD, recorded=True)
    finally:
        for engine in engines:
            engine.dispose()


# -- the commands ------------------------------------------------------------------------------


def run_bot(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` from ``cwd`` (not the repository: the commands work anywhere)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_an_older_schema_with_one_clear_line(
    engine: Engine, database: str, tmp_path: Path
) -> None:
    schema.migrate(engine, to="0001")
    result = run_bot(
        tmp_path,
        "serve",
        DATABASE_URL=database,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="secret",
        RUNBACK_CONFIG=str(REPO / "app.yaml"),
        PORT="0",
    )
    line = one_clear_line(result)
    assert "at revision 0001, older than this Runback's revision" in line
    assert "run `python -m bot db upgrade`" in line
    assert revision_of(engine) == Found("0001", recorded=True)


def test_db_upgrade_upgrades_from_any_directory(
    engine: Engine, database: str, tmp_path: Path
) -> None:
    schema.migrate(engine, to="0001")
    fill_first_revision(engine)
    before = run_bot(tmp_path, "db", "current", DATABASE_URL=database)
    assert before.returncode == 1 and "at revision 0001; this Runback needs" in before.stdout

    upgraded = run_bot(tmp_path, "db", "upgrade", DATABASE_URL=database)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == (
        f"runback: the database was at revision 0001, now at revision {HEAD}"
    )
    assert revision_of(engine) == Found(HEAD, recorded=True)
    again = run_bot(tmp_path, "db", "upgrade", DATABASE_URL=database)
    assert again.stdout.strip() == f"runback: the database is already at revision {HEAD}"
    assert run_bot(tmp_path, "db", "current", DATABASE_URL=database).returncode == 0
    assert not list(tmp_path.glob("*.ini")), "no alembic.ini needed"


@pytest.mark.parametrize("asked_by", ["--upgrade", "RUNBACK_DB_UPGRADE=1"])
def test_serve_upgrades_an_older_schema_when_asked(
    engine: Engine, database: str, tmp_path: Path, asked_by: str
) -> None:
    schema.migrate(engine, to="0001")
    fill_first_revision(engine)
    emulator = Emulator(slack_token="xoxb-test").start()
    port = free_port()
    env = {
        **os.environ,
        **emulator.env(),
        "PYTHONPATH": str(REPO),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "secret",
        "RUNBACK_CONFIG": str(REPO / "app.yaml"),
        "DATABASE_URL": database,
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    args = ["serve"]
    if asked_by == "--upgrade":
        args.append("--upgrade")
    else:
        env["RUNBACK_DB_UPGRADE"] = "1"
    log = tmp_path / "bot.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", *args],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def healthy() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).ok
        except requests.RequestException:
            return False

    try:
        wait_until(healthy, timeout_s=30, what="serve to start")
        assert revision_of(engine) == Found(HEAD, recorded=True)
    finally:
        process.terminate()
        process.wait(timeout=10)
        emulator.stop()
    store = Store(database)
    try:  # the running bot may have acted on them since (the approval expired): they are there
        operation = store.operations.operation("op1")
        assert operation is not None and operation.created_at == T0
        assert [a.action for a in store.journal.audit()][:2] == [
            "rollback.requested",
            "approval.requested",
        ]
    finally:
        store.close()


def test_db_current_changes_nothing_not_even_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "not-yet.db"
    result = run_bot(tmp_path, "db", "current", DATABASE_URL=f"sqlite:///{path}")
    assert result.returncode == 1
    assert (
        result.stdout.strip()
        == f"runback: the database is empty; this Runback needs revision {HEAD}"
    )
    assert not path.exists()


def test_doctor_says_an_older_schema_needs_db_upgrade_and_changes_nothing(
    engine: Engine, database: str
) -> None:
    import html

    from bot.doctor import check_database
    from bot.render import Renderer

    schema.migrate(engine, to="0001")
    findings = list(check_database(database, on_cloud_run=False))
    assert [(f.status, f.key, f.facts.get("revision")) for f in findings] == [
        ("fail", "database_behind", "0001")
    ]
    assert revision_of(engine) == Found("0001", recorded=True)
    line = html.unescape(Renderer("en").text(f"doctor.{findings[0].key}", **findings[0].facts))
    assert "python -m bot db upgrade" in line
