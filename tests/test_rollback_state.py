"""A rollback's typed data (bot/ops/rollback/states.py): what it reads, what it writes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.ops.rollback.record import RECORD, commit
from bot.ops.rollback.states import (
    DATA_VERSION,
    FailureFacts,
    GuardedMigration,
    HealthVerified,
    RecoveryOffers,
    RevisionFacts,
    RollbackData,
    SkippedRevision,
    rollback_data,
)
from bot.sandbox.console import Sandbox
from bot.store import Operation

AT = "2025-11-27T14:00:00+00:00"
FROM = {
    "revision": "wa-backend-00003",
    "image": "gcr.io/p/wa:3",
    "age_s": 600.0,
    "ready": True,
    "percent": 100,
}
TO = {"revision": "wa-backend-00002", "image": "gcr.io/p/wa:2", "age_s": 86400.0, "ready": True}
GUARD = {
    "revision": "wa-backend-00003",
    "verdict": "destructive",
    "flag": "FEATURE_FLAG_NEW_CHECKOUT",
    "flag_on": True,
    "statements": [{"line": 1, "rule": "drop_column", "verdict": "destructive", "data": {}}],
}


def requested(**over: object) -> dict[str, object]:
    """A rollback's data as the code before its type wrote it when asked for: no ``version``."""
    return {
        "from": FROM,
        "to": TO,
        "serving_before": {"wa-backend-00003": 100},
        "uri": "https://wa-backend.a.run.app",
        "requested_at": AT,
        "automatic": True,
        "drill": "",
        "skipped": [{"revision": "wa-backend-00001", "why": "Container failed to start"}],
        "migration_guard": [],
        "seq": 3,  # the store's, not the rollback's
        **over,
    }


def test_data_written_before_the_type_reads_as_its_first_version() -> None:
    """As rollbacks wrote it before ``RollbackData``: without ``version``, ``took_over`` and
    ``drop_tags`` only when set, a failure's facts beside its code, its offers as a dict."""
    failed = requested(
        took_over="op-release",
        drop_tags=["green"],
        timings={"shift": 0.8, "wait": 12},
        error={"code": "healthz_failed", "step": "verify", "url": "u", "checks": [{"ok": False}]},
        traffic_now={"wa-backend-00002": 100},
        offers={"previous": "wa-backend-00003", "next": "wa-backend-00001"},
    )
    data = RollbackData.of(Operation(kind="rollback", data=failed))
    assert data.version == DATA_VERSION == 1
    assert data.from_ == RevisionFacts(**FROM) and data.to.revision == "wa-backend-00002"
    assert data.to.percent == 0 and data.automatic and data.uri == "https://wa-backend.a.run.app"
    assert data.skipped == [
        SkippedRevision(revision="wa-backend-00001", why="Container failed to start")
    ]
    assert (data.took_over, data.drop_tags, data.timings) == (
        "op-release",
        ["green"],
        {"shift": 0.8, "wait": 12.0},
    )
    assert data.error is not None and (data.error.code, data.error.step) == (
        "healthz_failed",
        "verify",
    )
    assert data.error.model_dump()["checks"] == [{"ok": False}], "a failure's facts are kept"
    assert data.offers.revisions() == ["wa-backend-00003", "wa-backend-00001"]
    assert data.health is None and data.superseded_by == data.preempted_by == ""
    stored = data.stored()
    assert stored["from"] == FROM and "from_" not in stored, "stored under its own name"
    assert "seq" not in stored, "the store's own key is never written by the workflow"


def test_a_request_that_lost_the_race_left_nothing_and_reads_as_empty() -> None:
    data = RollbackData.of(Operation(kind="rollback", data={}))
    assert data == RollbackData() and data.from_.revision == "" and data.error is None
    assert data.offers == RecoveryOffers() and data.offers.revisions() == []


def test_data_written_by_today_s_rollbacks_reads_back_as_written() -> None:
    today = {
        **RollbackData(
            from_=RevisionFacts(**FROM),
            to=RevisionFacts(**TO),
            requested_at=AT,
            migration_guard=[GuardedMigration(**GUARD)],
        ).stored(),
        "timings": {"shift": 0.8, "wait": 12.0, "verify": 3.1},
        "health": {"url": "https://wa-backend.a.run.app/healthz", "checks": 3},
        "seq": 9,
    }
    data = RollbackData.of(Operation(kind="rollback", data=today))
    assert data.health == HealthVerified(url="https://wa-backend.a.run.app/healthz", checks=3)
    assert data.migration_guard[0].flag_on is True
    assert data.stored() == {k: v for k, v in today.items() if k != "seq"}


def test_another_kind_of_operation_reads_as_no_rollback() -> None:
    """An incident's answer, or the lock holder it names, may be a release: not a rollback's."""
    release = Operation(kind="release", data={"steps": [10, 100], "error": "not a rollback's"})
    assert rollback_data(release) == RollbackData() == rollback_data(None)
    assert rollback_data(Operation(kind="rollback", data=requested())).automatic


def test_changes_are_validated_and_stored_as_plain_json() -> None:
    data = RollbackData(requested_at=AT, uri="https://wa-backend.a.run.app")
    failure = {"code": "traffic_mismatch", "step": "wait", "serving": {"wa-backend-00003": 100}}
    failed = data.changed(error=failure, traffic_now=None, offers=RecoveryOffers())
    stored = failed.stored()
    assert stored["version"] == DATA_VERSION and stored["error"] == failure
    assert stored["offers"] == {"previous": "", "next": ""} and stored["traffic_now"] is None
    assert RollbackData.model_validate(stored) == failed
    assert failed.error == FailureFacts(**failure)
    with pytest.raises(ValidationError):
        data.changed(timings={"shift": "fast"})
    with pytest.raises(ValidationError):
        data.changed(error={"step": "wait"})  # a failure always says its code
    with pytest.raises(ValidationError):
        data.changed(health={"url": "u"})  # how many checks passed
    with pytest.raises(ValidationError):
        RollbackData.of(Operation(kind="rollback", data={"skipped": ["wa-backend-00001"]}))


def test_a_write_to_a_row_written_before_the_type_keeps_what_it_does_not_name(
    sandbox: Sandbox,
) -> None:
    """Every write goes through ``RollbackData``: the row gets its ``version``, and keeps the
    store's ``seq`` (counting on) and any key the type does not name."""
    deps = sandbox.runtime.deps
    old = deps.store.operations.create_operation(
        deps.clock.now(),
        kind="rollback",
        service="wa-backend",
        requested_by="U0ANA",
        channel="C0INCIDENTS",
        reason="checkout errors",
        emergency=True,
        state="cancelled",
        from_revision="wa-backend-00003",
        to_revision="wa-backend-00002",
        data=requested(note="not the rollback's"),
    )
    assert "version" not in old.data
    written = commit(deps, old, timings={"shift": 0.5})
    assert written.data["version"] == DATA_VERSION and written.data["seq"] == 4
    assert written.data["note"] == "not the rollback's", "a key the type does not name is kept"
    assert RollbackData.of(written) == RollbackData.of(old).changed(timings={"shift": 0.5})
    merged = RECORD.merge(deps, written, preempted_by="U0LUIS", preempted_reason="pager")
    assert (merged.data["preempted_by"], merged.data["note"], merged.data["seq"]) == (
        "U0LUIS",
        "not the rollback's",
        4,
    )
    with pytest.raises(ValidationError):
        commit(deps, merged, timings={"shift": "fast"})
    stored = deps.store.operations.operation(old.id)
    assert stored is not None and stored.data == merged.data, "nothing written"
