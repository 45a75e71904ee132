"""A restore's typed data (bot/ops/restore/states.py): what it reads, what it writes, and that
its record writes through it (bot/ops/restore/record.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from bot.ops.incidents.lifecycle import moved_traffic_back
from bot.ops.restore.states import (
    DATA_VERSION,
    RestoreData,
    RestoredBackup,
    RestoreOutcome,
    StepMark,
    WaitingFor,
    Yielded,
)
from bot.ops.stepping import Record, step_ended, step_started
from bot.store import Operation, Store, data_seq
from tests.db import BACKENDS, open_store

NOW = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
CLONE = "wa-backend-db-r20261130-0900-ab12"
ASKED = RestoreData(
    project="runback-sandbox",
    instance="wa-backend-db",
    backup=RestoredBackup(id="1796", automated=True, at="2026-11-30T03:00:00+00:00"),
    clone=CLONE,
    env="DATABASE_URL",
    secret="wa-backend-database-url",
    secret_version="1",
)

# A restore that went back after its judgement, as the code before RestoreData wrote it: no
# ``version``, keys written only once their step ran, the store's ``seq``.
WRITTEN_BEFORE: dict[str, Any] = {
    "project": "runback-sandbox",
    "instance": "wa-backend-db",
    "backup": {"id": "1796", "automated": True, "at": "2026-11-30T03:00:00+00:00"},
    "clone": CLONE,
    "env": "DATABASE_URL",
    "secret": "wa-backend-database-url",
    "secret_version": "1",
    "new_secret": False,
    "steps": {
        "create": {
            "status": "done",
            "started": "2026-11-30T09:00:00+00:00",
            "ended": "2026-11-30T09:04:00+00:00",
            "s": 240.0,
        },
        "verify": {
            "status": "failed",
            "started": "2026-11-30T09:20:00+00:00",
            "ended": "2026-11-30T09:25:00+00:00",
            "s": 300.0,
            "note": "error_rate",
        },
    },
    "create_sent": True,
    "restore_sent": True,
    "copied": {"edition": "ENTERPRISE", "tier": "db-custom-2-7680", "flags": ["max_connections"]},
    "sql_op": "",
    "sql_status": "",
    "unreachable": "",
    "clone_endpoint": ["runback-sandbox:us-central1:" + CLONE, ["10.0.0.7"]],
    "new_var": {"secret": "wa-backend-database-url", "version": "2", "project": "runback-sandbox"},
    "swap": ["runback-sandbox:us-central1:wa-backend-db", "runback-sandbox:us-central1:" + CLONE],
    "replaces": "wa-backend-db",
    "run_op": "",
    "base": "wa-backend-00003",
    "tag_uri": "",
    "service_uri": "https://wa-backend.run.app",
    "waiting_for": None,
    "yielded": {"by": "U0ANA", "at": "2026-11-30T09:02:00+00:00", "state": "creating"},
    "shifted_at": "2026-11-30T09:20:00+00:00",
    "observing_since": None,
    "last": {"at": "2026-11-30T09:25:00+00:00", "verdict": "rollback", "reasons": ["error_rate"]},
    "outcome": {"step": "verify", "why": "error_rate"},
    "serving": {"wa-backend-00003": 100},
    "due_at": None,
    "seq": 41,  # the store's, not the restore's
}


def test_a_restore_written_before_the_type_reads_as_its_first_version() -> None:
    data = RestoreData.of(Operation(data=WRITTEN_BEFORE))
    assert data.version == DATA_VERSION == 1
    assert data.backup == RestoredBackup(
        id="1796", automated=True, at="2026-11-30T03:00:00+00:00", description=""
    )
    assert data.steps["create"] == StepMark(
        status="done",
        started="2026-11-30T09:00:00+00:00",
        ended="2026-11-30T09:04:00+00:00",
        s=240.0,
    )
    assert (data.steps["verify"].model_extra or {})["note"] == "error_rate", "a step's note kept"
    assert data.clone_endpoint == ("runback-sandbox:us-central1:" + CLONE, ("10.0.0.7",))
    assert data.swap == tuple(WRITTEN_BEFORE["swap"])
    assert data.new_var is not None and data.new_var.version == "2"
    assert data.copied is not None and data.copied.flags == ["max_connections"]
    assert data.copied.public_ip and data.copied.network == "", "settings not summarised: defaults"
    assert data.yielded == Yielded(
        by="U0ANA", at="2026-11-30T09:02:00+00:00", state="creating", reason=""
    )
    assert data.outcome == RestoreOutcome(step="verify", why="error_rate")
    assert data.last is not None and data.last["reasons"] == ["error_rate"]
    assert data.serving == {"wa-backend-00003": 100} and data.verified is None
    assert data.rebuilt is None and data.going_back_failed == ""
    stored = data.stored()
    assert "seq" not in stored, "the store's own key is never written by the workflow"
    assert stored["clone_endpoint"] == WRITTEN_BEFORE["clone_endpoint"], "stored as it was"
    assert stored["swap"] == WRITTEN_BEFORE["swap"] and stored["steps"] == WRITTEN_BEFORE["steps"]


def test_a_restore_just_asked_for_reads_back_as_written() -> None:
    stored = ASKED.stored()
    assert stored["version"] == DATA_VERSION and stored["steps"] == {}
    assert stored["backup"] == {
        "id": "1796",
        "automated": True,
        "at": "2026-11-30T03:00:00+00:00",
        "description": "",
    }
    assert RestoreData.of(Operation(data={**stored, "seq": 3})) == ASKED


def test_the_shared_step_marks_are_written_through_the_type() -> None:
    operation = Operation(data=ASKED.stored())
    started = ASKED.changed(**step_started(operation, "create", NOW))
    operation = Operation(data=started.stored())
    ended = RestoreData.of(operation).changed(
        **step_ended(operation, "create", NOW, "failed", note="permission_denied", url=None)
    )
    mark = ended.steps["create"]
    assert mark.status == "failed" and mark.ended == NOW.isoformat() and mark.s == 0.0
    assert ended.stored()["steps"]["create"]["note"] == "permission_denied"


def test_changes_are_validated() -> None:
    waiting = ASKED.changed(waiting_for={"kind": "rollback", "id": "op-7", "by": "U0ANA"})
    assert waiting.waiting_for == WaitingFor(kind="rollback", id="op-7", by="U0ANA")
    assert waiting.changed(waiting_for=None).waiting_for is None
    with pytest.raises(ValidationError):
        ASKED.changed(new_var={"secret": "s"})  # no version to read
    with pytest.raises(ValidationError):
        ASKED.changed(clone_endpoint="runback-sandbox:us-central1:" + CLONE)  # no addresses
    with pytest.raises(ValidationError):
        ASKED.changed(yielded={"by": "U0ANA"})  # when, and from which state
    with pytest.raises(ValidationError):
        RestoreData.of(Operation(data={"steps": {}}))  # not a restore's: no backup, no clone


def test_a_restore_gone_back_mitigates_only_once_its_revision_had_traffic() -> None:
    """The incident's reading of a restore's data (bot/ops/incidents/lifecycle.py)."""
    shifted = ASKED.changed(steps={"shift": StepMark(status="done", started=NOW.isoformat())})
    back = Operation(kind="restore", state="rolled_back", data=shifted.stored())
    assert moved_traffic_back(back)
    before = Operation(kind="restore", state="rolled_back", data=ASKED.stored())
    assert not moved_traffic_back(before), "traffic never left the old revision"
    assert not moved_traffic_back(Operation(kind="restore", state="judging", data=shifted.stored()))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, tmp_path) as opened:
        yield opened


def test_every_commit_and_end_writes_the_type_and_keeps_what_it_does_not_name(
    store: Store,
) -> None:
    """A row written before the type, with a key no code reads any more: the restore's commits
    write its typed data over it; that key stays, the store's ``seq`` counts the writes."""
    row = {k: v for k, v in WRITTEN_BEFORE.items() if k != "seq"}
    row.update(outcome=None, serving=None, going_back_failed="", old_note="kept")
    created = store.operations.create_operation(
        NOW,
        kind="restore",
        service="wa-backend",
        state="judging",
        requested_by="U0LUIS",
        channel="C0OPS",
        from_revision="wa-backend-00003",
        to_revision="wa-backend-00004-abc",
        data=row,
    )
    store.operations.acquire_lock("wa-backend", created.id, NOW)
    shown: list[str] = []
    record = Record(
        "restore",
        lambda deps, operation_id, written=None: shown.append(operation_id),
        RestoreData,
    )
    audited: list[tuple[Any, ...]] = []
    deps = SimpleNamespace(
        store=store,
        clock=SimpleNamespace(now=lambda: NOW),
        audit=lambda *args, **facts: audited.append((*args, facts)),
    )
    operation = store.operations.operation(created.id)
    assert operation is not None

    going_back = record.commit(
        deps, operation, "going_back", outcome={"step": "verify", "why": "asked", "by": "U0ANA"}
    )
    assert going_back.state == "going_back" and data_seq(going_back) == 1
    assert going_back.data["version"] == DATA_VERSION and going_back.data["old_note"] == "kept"
    assert going_back.data["outcome"] == {
        "step": "verify",
        "why": "asked",
        "by": "U0ANA",
        "reason": "",
    }
    with pytest.raises(ValidationError):
        record.commit(deps, going_back, outcome={"step": 3})

    ended = record.end(deps, going_back, "rolled_back", {}, serving={"wa-backend-00003": 100})
    assert ended.state == "rolled_back" and data_seq(ended) == 2
    assert ended.data["old_note"] == "kept" and ended.data["due_at"] is None
    data = RestoreData.of(ended)
    assert data.serving == {"wa-backend-00003": 100} and data.outcome is not None
    assert data.stored() == {k: v for k, v in ended.data.items() if k not in ("seq", "old_note")}
    assert store.operations.lock_holder("wa-backend") is None, "the end gives the lock back"
    assert shown == [created.id, created.id]
    assert audited[0][:3] == ("runback", "restore.rolled_back", "rolled_back")
