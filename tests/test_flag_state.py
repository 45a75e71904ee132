"""A flag flip's typed data (bot/ops/flags/states.py): what it reads, what it writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from bot.ops.flags.states import DATA_VERSION, FlagBefore, FlagData, PendingChange, StepMark
from bot.ops.stepping import step_ended, step_started
from bot.store import Operation

NOW = datetime(2025, 11, 27, 14, 0, tzinfo=UTC)


def test_data_written_by_the_first_flips_reads_as_its_first_version() -> None:
    """As the flip wrote it before its step marks were shared: a step's end as ``at``, and a
    ``stop_requested`` no code reads any more."""
    old = Operation(
        data={
            "flag": "NEW_CHECKOUT",
            "env": "FEATURE_FLAG_NEW_CHECKOUT",
            "value": True,
            "text": "true",
            "before": {"text": "false", "value": False},
            "uri": "https://wa-backend.run.app",
            "steps": {
                "deploy": {
                    "status": "done",
                    "started": "2025-11-27T13:50:00+00:00",
                    "at": "2025-11-27T13:50:04+00:00",
                    "s": 4.0,
                },
                "verify": {"status": "running", "started": "2025-11-27T13:50:04+00:00"},
            },
            "pending": {"op": "op-1", "then": "shifted", "purpose": "shift", "expect": {"r": 100}},
            "tag_uri": "https://flag---wa-backend.run.app",
            "judgements": [{"at": "2025-11-27T13:55:00+00:00", "verdict": "proceed"}],
            "stop_requested": True,
            "due_at": None,
            "seq": 7,  # the store's, not the flip's
        }
    )
    data = FlagData.of(old)
    assert data.version == DATA_VERSION == 1
    assert data.before == FlagBefore(text="false", value=False) and data.value is True
    deploy = data.steps["deploy"]
    assert deploy.ended == "2025-11-27T13:50:04+00:00" and deploy.s == 4.0, "at reads as ended"
    assert data.steps["verify"] == StepMark(status="running", started="2025-11-27T13:50:04+00:00")
    assert data.pending == PendingChange(
        op="op-1", then="shifted", purpose="shift", expect={"r": 100}
    )
    assert data.purpose == "shift" and data.judgements[0]["verdict"] == "proceed"
    assert data.waiting is None and data.judged_until is None and data.outcome is None
    assert "at" not in data.stored()["steps"]["deploy"], "stored again with today's name"


def test_data_written_by_today_s_flips_reads_back_as_written() -> None:
    stored = FlagData(
        flag="BETA_SEARCH", env="FEATURE_FLAG_BETA_SEARCH", value=False, text="false"
    ).stored()
    today = {
        **stored,
        "steps": {"watch": {"status": "done", "started": "a", "ended": "b", "s": 0.5}},
        "waiting": {"since": NOW.isoformat(), "newest": None, "behind_s": None},
        "judged_until": NOW.isoformat(),
        "observing_since": None,
        "outcome": {"code": "kept"},
        "traffic_now": {"wa-backend-00004": 100},
        "seq": 12,
    }
    data = FlagData.of(Operation(data=today))
    assert data.before is None, "a new flag (--new): no serving revision had it"
    assert data.stored() == {k: v for k, v in today.items() if k != "seq"}


def test_the_shared_step_marks_are_written_through_the_type_beside_old_ones() -> None:
    """bot/ops/stepping.py marks the steps for every workflow; the flip's old marks stay."""
    flip = FlagData(flag="F", env="FEATURE_FLAG_F", value=True, text="true")
    started = "2025-11-27T13:59:00+00:00"
    old = {"status": "done", "started": started, "at": started, "s": 0.0}
    operation = Operation(data=flip.changed(steps={"deploy": old}).stored())
    operation = Operation(
        data=FlagData.of(operation).changed(**step_started(operation, "shift", NOW)).stored()
    )
    data = FlagData.of(operation).changed(**step_ended(operation, "shift", NOW, "done"))
    assert data.steps["deploy"] == StepMark(status="done", started=started, ended=started, s=0.0)
    assert data.steps["shift"] == StepMark(
        status="done", started=NOW.isoformat(), ended=NOW.isoformat(), s=0.0
    )


def test_changes_are_validated_and_stored_as_plain_json() -> None:
    data = FlagData(flag="NEW_CHECKOUT", env="FEATURE_FLAG_NEW_CHECKOUT", value=True, text="true")
    pending = {"op": "op-2", "then": "deployed", "purpose": "deploy", "expect": {"r3": 100}}
    applying = data.changed(pending=pending, due_at=None)
    stored = applying.stored()
    assert stored["pending"] == pending and stored["version"] == DATA_VERSION
    assert stored["steps"] == {} and stored["judgements"] == []
    assert "seq" not in stored, "the store's own key is never written by the workflow"
    assert FlagData.model_validate(stored) == applying
    assert applying.changed(pending=None).purpose == ""
    with pytest.raises(ValidationError):
        data.changed(traffic_now={"r3": "all of it"})
    with pytest.raises(ValidationError):
        data.changed(pending={"purpose": "deploy"})  # no Cloud Run operation to follow
    with pytest.raises(ValidationError):
        FlagData.of(Operation(data={"pending": None}))  # not a flip's: no flag
