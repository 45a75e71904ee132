"""A backup's typed data (bot/ops/backups/states.py): what it reads, what it writes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.ops.backups.states import DATA_VERSION, BackupData
from bot.ops.backups.take import PendingBackup
from bot.store import Operation

PENDING = PendingBackup(
    service="wa-backend",
    project="runback-sandbox",
    instance="wa-db",
    operation="op-1",
    backup_id="1796",
    description="/ops backup by ana",
    started_at="2024-05-01T10:00:00+00:00",
)


def test_data_written_before_the_type_reads_as_its_first_version() -> None:
    old = Operation(
        data={
            "instance": "wa-db",
            "project": "runback-sandbox",
            "pending": {**PENDING.to_data()},
            "backup_id": "1796",
            "op_status": "RUNNING",
            "due_at": "2024-05-01T10:00:10+00:00",
            "seq": 3,  # the store's, not the backup's
        }
    )
    data = BackupData.of(old)
    assert data.version == DATA_VERSION == 1
    assert data.pending == PENDING and data.op_status == "RUNNING" and data.error == ""


def test_changes_are_validated_and_stored_as_plain_json() -> None:
    data = BackupData(instance="wa-db", project="runback-sandbox")
    started = data.changed(pending=PENDING, backup_id="1796", op_status="PENDING")
    stored = started.stored()
    assert stored["pending"] == PENDING.to_data() and stored["version"] == DATA_VERSION
    assert "seq" not in stored, "the store's own key is never written by the workflow"
    assert BackupData.model_validate(stored) == started
    with pytest.raises(ValidationError):
        data.changed(elapsed_s="a while")
