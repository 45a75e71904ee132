"""A drill's typed data (bot/ops/drill/states.py): what it reads, what it writes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.ops.drill.states import DATA_VERSION, DrillData
from bot.store import Operation

AT = "2026-05-01T12:00:00+00:00"
DEPLOYED = {"at": AT, "step": "deploy", "ok": True, "s": 0.4, "revision": "s-drill-1"}


def test_data_written_before_the_type_reads_as_its_first_version() -> None:
    """A drill's data as today's code wrote it, at each point of its life, reads as version 1."""
    requested = {"requested_at": AT, "trigger": "schedule", "drill_id": "d1", "seq": 1}
    waiting = {
        **requested,
        "blue": "s-00003",
        "image": "us-docker.pkg.dev/p/apps/wa:v1",
        "uri": "https://s-abc-uc.a.run.app",
        "started_at": AT,
        "pending": "",
        "log": [DEPLOYED],
        "outcome": {"code": "stood_aside", "by": "U0ANA", "reason": "pager"},
        "stop_requested": True,
        "rollback_id": "op-rb",
        "due_at": AT,
        "seq": 7,  # the store's, not the drill's
    }
    data = DrillData.of(Operation(data=requested))
    assert data.version == DATA_VERSION == 1
    assert (data.trigger, data.drill_id, data.blue, data.log, data.outcome) == (
        "schedule",
        "d1",
        "",
        [],
        None,
    )
    data = DrillData.of(Operation(data=waiting))
    assert data.version == 1 and data.log == [DEPLOYED] and data.stop_requested
    assert data.outcome == {"code": "stood_aside", "by": "U0ANA", "reason": "pager"}
    assert (data.rollback_id, data.time_to_safe_s, data.due_at) == ("op-rb", None, AT)


def test_changes_are_validated_and_stored_as_plain_json() -> None:
    data = DrillData(requested_at=AT)
    rolled_back = data.changed(
        blue="s-00003", log=[DEPLOYED], rollback_id="op-rb", time_to_safe_s=1, due_at=None
    )
    stored = rolled_back.stored()
    assert stored["version"] == DATA_VERSION and stored["trigger"] == "command"
    assert stored["log"] == [DEPLOYED] and stored["time_to_safe_s"] == 1.0
    assert "seq" not in stored, "the store's own key is never written by the workflow"
    assert DrillData.model_validate(stored) == rolled_back
    with pytest.raises(ValidationError):
        data.changed(trigger="cron")
    with pytest.raises(ValidationError):
        data.changed(time_to_safe_s="a while")
    with pytest.raises(ValidationError):
        DrillData.of(Operation(data={"blue": "s-00003"}))  # not a drill's: never requested
