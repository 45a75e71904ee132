"""A release's typed data (bot/ops/release/states.py ``ReleaseData``): what it reads, what it
writes, and the data migration that rewrote version 1's rows as version 2
(bot/migrations/versions/0005_release_data_v2.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from pydantic import ValidationError
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine

from bot import schema
from bot.database import make_engine
from bot.ops.release.states import (
    DATA_VERSION,
    PendingChange,
    ReleaseBackup,
    ReleaseData,
    ReleaseMigration,
    TrafficMark,
)
from bot.schema import HEAD
from bot.store import Operation
from tests.db import BACKENDS, empty_database

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
BEFORE = "0004_drill"  # the revision before release data had its version 2

# A release as today's code wrote it before its type (version 1): judging at 100% after both
# approvals, with its pre-deployment backup, a judgement and the store's ``seq``.
V1: dict[str, Any] = {
    "image": "europe-docker.pkg.dev/p/r/wa-backend:v1.3.0",
    "staging": False,
    "uri": "https://wa-backend.run.app",
    "steps": [10, 50, 100],
    "step": 2,
    "history": [
        {"at": "2026-03-02T09:10:00+00:00", "percent": 10},
        {"at": "2026-03-02T09:20:00+00:00", "percent": 50},
        {"at": "2026-03-02T09:28:00+00:00", "percent": 100},
    ],
    "judgements": [{"at": "2026-03-02T09:29:00+00:00", "verdict": "proceed", "percent": 100}],
    "blue_image": "europe-docker.pkg.dev/p/r/wa-backend:v1.2.0",
    "requested_at": "2026-03-02T09:00:00+00:00",
    "warnings": [],
    "confirmed": False,
    "migration": {
        "verdict": "destructive",
        "statements": [{"line": 1, "verdict": "destructive", "text": "DROP TABLE carts"}],
        "dialect": "postgres",
        "source": "ci",
        "commit": "abc123",
        "registered_by": "ci",
        "flag": "FEATURE_FLAG_NEW_CARTS",
        "candidate": 4,
    },
    "ci": True,
    "readiness": {"items": [], "failures": 0, "warnings": 0},
    "backup": {"status": "succeeded", "backup_id": "b-1", "instance": "wa-db"},
    "green_uri": "https://green---wa-backend.run.app",
    "service_uri": "https://wa-backend.run.app",
    "expected": {"wa-backend-00004-abc": 100},
    "pending": None,
    "due_at": "2026-03-02T09:31:00+00:00",
    "awaiting": None,
    "next_step": 2,
    "migration_approved": True,
    "migration_approved_by": "U0LUIS",
    "full_traffic_approved": True,
    "approved_by": "U0LUIS",
    "step_started": "2026-03-02T09:28:00+00:00",
    "judged_until": "2026-03-02T09:27:00+00:00",
    "observing_since": None,
    "waiting": None,
    "inconclusive_since": None,
    "seq": 31,  # the store's, not the release's
}


def check_v2(data: ReleaseData) -> None:
    """``V1``'s values, by version 2's names."""
    assert data.version == DATA_VERSION == 2
    assert data.percents == [10, 50, 100] and data.step == 2 and data.percent == 100
    assert data.shifted_at == "2026-03-02T09:28:00+00:00"
    assert data.full_traffic_approved_by == "U0LUIS" == data.migration_approved_by
    assert data.history[-1] == TrafficMark(at="2026-03-02T09:28:00+00:00", percent=100)
    assert data.migration is not None and data.migration.flag == "FEATURE_FLAG_NEW_CARTS"
    assert data.guarded and data.migration.candidate == 4
    assert data.backup == ReleaseBackup(status="succeeded", backup_id="b-1", instance="wa-db")
    assert data.expected == {"wa-backend-00004-abc": 100} and data.pending is None
    assert data.judgements[0]["verdict"] == "proceed" and data.ci is True


# -- the type ------------------------------------------------------------------------------------


def test_data_written_before_the_type_reads_as_version_2() -> None:
    data = ReleaseData.of(Operation(data=V1))
    check_v2(data)
    stored = data.stored()
    assert not {"steps", "step_started", "approved_by", "migration_approved"} & set(stored)
    assert "seq" not in stored, "the store's own key is never written by the release"


def test_data_written_today_reads_back_as_written() -> None:
    data = ReleaseData(
        image="wa-backend:v2",
        requested_at=NOW.isoformat(),
        percents=[10, 50, 100],
        pending=PendingChange(op="op-1", then="shifted", purpose="shift", expect={"g": 10}),
        migration=ReleaseMigration(verdict="additive"),
    )
    stored = data.stored()
    assert stored["version"] == DATA_VERSION and stored["step"] == -1 and stored["history"] == []
    again = ReleaseData.of(Operation(data={**stored, "seq": 3}))
    assert again == data and again.purpose == "shift" and again.percent == 0
    assert not again.guarded, "an additive migration needs no backup nor approval"


def test_changes_are_validated() -> None:
    data = ReleaseData(image="i", requested_at=NOW.isoformat(), percents=[100], staging=True)
    shifted = data.changed(step=0, history=[{"at": NOW.isoformat(), "percent": 100}])
    assert shifted.percent == 100 and shifted.history[0].event == ""
    with pytest.raises(ValidationError):
        data.changed(expected={"g": "all of it"})
    with pytest.raises(ValidationError):
        data.changed(pending={"purpose": "deploy"})  # no Cloud Run operation to follow
    with pytest.raises(ValidationError):
        ReleaseData.of(Operation(data={"flag": "F"}))  # not a release's: no image


def test_a_version_1_write_over_a_version_2_row_reads_as_version_2() -> None:
    """A Runback of before the migration wrote its version-1 data over a migrated row (the
    store's write merges): the row says no version, and its version-1 names win."""
    migrated = ReleaseData.of(Operation(data=V1)).stored()
    old_write = {k: v for k, v in migrated.items() if k != "version"} | {**V1, "step": 1}
    data = ReleaseData.of(Operation(data=old_write))
    assert data.step == 1 and data.percents == [10, 50, 100] and data.percent == 50


# -- the data migration --------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with empty_database(request.param, tmp_path) as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def add_release(
    engine: Engine, operation_id: str, data: dict[str, Any], kind: str = "release"
) -> None:
    """A row as the revision before wrote it, through the tables as they were."""
    tables = MetaData()
    with engine.begin() as connection:
        tables.reflect(connection)
        connection.execute(
            tables.tables["operations"].insert(),
            {
                "id": operation_id,
                "kind": kind,
                "service": "wa-backend",
                "state": "judging",
                "requested_by": "U0MARTA",
                "channel": "C0RELEASES",
                "reason": "",
                "emergency": False,
                "from_revision": "wa-backend-00003-xyz",
                "to_revision": "wa-backend-00004-abc",
                "data": data,
                "cloud_operation": "",
                "message_ts": "",
                "lease_owner": "",
                "lease_until": None,
                "created_at": NOW,
                "updated_at": NOW,
                "finished_at": None,
            },
        )


def stored_data(engine: Engine, operation_id: str) -> dict[str, Any]:
    """The row's data as stored, read past the models (the schema may be older than them)."""
    tables = MetaData()
    with engine.connect() as connection:
        tables.reflect(connection)
        operations = tables.tables["operations"]
        query = select(operations.c.data).where(operations.c.id == operation_id)
        data = connection.execute(query).scalar_one()
    return dict(json.loads(data) if isinstance(data, str) else data)


def downgrade(engine: Engine, to: str) -> None:
    with engine.connect() as connection:
        config = Config()
        config.set_main_option("script_location", str(schema.MIGRATIONS))
        config.attributes["connection"] = connection
        command.downgrade(config, to)
        connection.commit()


def test_the_migration_rewrites_version_1_releases_and_its_downgrade_restores_them(
    engine: Engine,
) -> None:
    schema.migrate(engine, to=BEFORE)
    add_release(engine, "rel1", V1)
    staging = {**V1, "staging": True, "steps": [100], "step": -1}
    for key in ("approved_by", "full_traffic_approved", "migration_approved", "step_started"):
        staging.pop(key)
    staging.update(migration=None, migration_approved_by="")  # no approval asked
    add_release(engine, "rel2", staging)
    rollback = {"images": ["wa@sha256:ab"], "steps": {"shift": {"status": "done"}}}
    add_release(engine, "rb1", rollback, kind="rollback")

    schema.migrate(engine)  # to head: the data migration
    assert schema.migrate(engine).revision == HEAD, "at head already"
    migrated = stored_data(engine, "rel1")
    assert migrated["version"] == 2 and migrated["seq"] == 31, "the row keeps its seq"
    check_v2(ReleaseData.model_validate(migrated))
    assert ReleaseData.of(Operation(data=migrated)) == ReleaseData.of(Operation(data=V1))
    second = ReleaseData.model_validate(stored_data(engine, "rel2"))
    assert second.percents == [100] and second.shifted_at is None
    assert second.full_traffic_approved_by == "" == second.migration_approved_by
    assert stored_data(engine, "rb1") == rollback, "only releases are rewritten"
    # the previous Runback, still running during the rollout, reads the names it knows
    assert {k: v for k, v in migrated.items() if k in V1} == V1

    downgrade(engine, BEFORE)
    assert stored_data(engine, "rel1") == V1
    assert stored_data(engine, "rel2") == staging
    assert stored_data(engine, "rb1") == rollback


def test_rows_written_by_today_s_code_go_back_to_what_version_1_reads(engine: Engine) -> None:
    """A release created after the migration, downgraded: version 1's names, and no ``backup``
    key while it has none (version 1's deploy takes the pre-deployment backup only then)."""
    schema.migrate(engine)
    today = ReleaseData(image="wa-backend:v2", requested_at=NOW.isoformat(), percents=[10, 100])
    add_release(engine, "rel3", today.changed(step=0, shifted_at=NOW.isoformat()).stored())
    downgrade(engine, BEFORE)
    old = stored_data(engine, "rel3")
    assert old["steps"] == [10, 100] and old["step_started"] == NOW.isoformat()
    assert "backup" not in old and "version" not in old and "percents" not in old
    assert "approved_by" not in old and "full_traffic_approved" not in old
    assert ReleaseData.of(Operation(data=old)).percent == 10, "read as version 1 again"
