"""The rollback drill end to end: `/ops drill` and the schedule through `POST /tasks/tick`, the
real run_v2 client against the Cloud Run emulator, the production rollback workflow, Slack's
emulator (the card, the result, the log file). Tests wait on the store, never a fixed time."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.ops.drill.states import DrillData
from bot.ops.rollback import RollbackData
from bot.sandbox.console import Sandbox
from bot.store import DrillRecord, Operation
from tests.conftest import sandbox_config
from tests.helpers import run, send_command, serving, wait_until

STAGING = "wa-backend-staging"
BLUE = "wa-backend-staging-00003"
TEAM = "C0GENERAL"  # drill.channel in app.yaml


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox(sandbox_config(), retry_deadline_s=1.5)
    try:
        yield sandbox
    finally:
        sandbox.close()


def drills(box: Sandbox, *outcomes: str) -> list[DrillRecord]:
    return box.runtime.deps.store.drills.drills(
        outcomes=outcomes or ("running", "passed", "failed")
    )


def operations(box: Sandbox, kind: str) -> list[Operation]:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == kind).order_by(Operation.created_at)
        return list(session.scalars(query))


def started(box: Sandbox) -> list[Operation]:
    return [o for o in operations(box, "drill") if o.state != "cancelled"]


def drill_progress(box: Sandbox) -> str:
    """What the drills and rollbacks are doing, for a timeout's message."""
    rows = [
        (o.kind, o.id, o.state, DrillData.of(o).due_at, o.lease_owner)
        for o in operations(box, "drill")
    ]
    rows += [(o.kind, o.id, o.state, None, o.lease_owner) for o in operations(box, "rollback")]
    return repr(rows)


def finished(box: Sandbox) -> DrillRecord:
    wait_until(lambda: bool(drills(box, "passed", "failed")), "the drill to end")
    return drills(box, "passed", "failed")[0]


def team_texts(box: Sandbox) -> list[str]:
    return [
        json.dumps([m["text"], m.get("blocks")], ensure_ascii=False)
        for m in box.emulator.slack.messages()
        if m["channel"] == TEAM
    ]


def tick(box: Sandbox) -> int:
    url = box.bot_url.replace("/slack/events", "/tasks/tick")
    headers = {"Authorization": f"Bearer {box.alert_token}"}
    return box.http.post(url, headers=headers, timeout=30).status_code


# -- /ops drill --------------------------------------------------------------------------------


def test_a_drill_deploys_a_test_revision_rolls_back_with_the_production_rollback_and_passes(
    box: Sandbox,
) -> None:
    out = run(box, "as pablo", "/ops drill")
    assert f"Rollback drill on `{STAGING}` started" in out
    record = finished(box)
    assert record.outcome == "passed", record.detail
    assert record.time_to_safe_s is not None and 0 < record.time_to_safe_s < 30
    assert serving(box, STAGING) == {BLUE: 100}
    (drill,) = operations(box, "drill")
    assert drill.state == "succeeded" and drill.to_revision.startswith(f"{STAGING}-drill-")
    tags = {r["tag"]: r["revision"] for r in box.emulator.cloudrun.traffic(STAGING) if r["tag"]}
    assert tags == {"drill": drill.to_revision}
    # the same image as blue, through the deploy of the Cloud Run adapter
    revision = box.runtime.deps.cloudrun.get_revision(
        box.runtime.deps.service_ref(box.config.service(STAGING)), drill.to_revision
    )
    blue_image = f"us-docker.pkg.dev/runback-sandbox/apps/{STAGING}:v1.2.0"
    assert revision.image == box.emulator.cloudrun.images.resolve(blue_image), "by its digest"
    (rollback,) = operations(box, "rollback")
    assert (rollback.state, rollback.to_revision, RollbackData.of(rollback).drill) == (
        "succeeded",
        BLUE,
        drill.id,
    )
    assert rollback.from_revision == drill.to_revision
    assert record.time_to_safe_s == pytest.approx(
        (rollback.finished_at - rollback.created_at).total_seconds()
    )
    assert [e["step"] for e in record.detail["log"]] == [
        "deploy",
        "deployed",
        "verify",
        "rollback",
        "metrics",
    ]
    assert box.emulator.router.calls.list("service.metrics"), "/metrics was verified"
    texts = team_texts(box)
    assert any("Rollback drill on `wa-backend-staging` passed" in t for t in texts)
    assert any("Rollback drill" in t and "Drill passed" in t for t in texts), "the card"
    assert box.runtime.deps.store.operations.lock_holder(STAGING) is None
    assert [
        a.action for a in box.runtime.deps.store.journal.audit() if a.action.startswith("drill.")
    ] == [
        "drill.requested",
        "drill.passed",
    ]


def test_a_test_revision_slower_to_deploy_than_the_timeout_is_followed_not_failed() -> None:
    """Cloud Run still applying the drill's deploy after ``operation_timeout_s`` has not failed
    (bot/ops/applying.py follow_change): the drill follows the same operation on and passes."""
    config = sandbox_config()
    slow = config.release.model_copy(update={"operation_timeout_s": 0.3})
    box = Sandbox(config.model_copy(update={"release": slow}), retry_deadline_s=1.5)
    try:
        box.emulator.cloudrun.operation_delay_s = 1.0  # three timeouts' worth of waiting
        run(box, "as pablo", "/ops drill")
        record = finished(box)
        assert record.outcome == "passed", record.detail
        (drill,) = operations(box, "drill")
        events = [e.kind for e in box.runtime.deps.store.journal.timeline(drill.id)]
        assert "operation_slow" in events, events
        deploys = [c for c in box.emulator.router.calls.list("run.services.patch")]
        assert len(deploys) == 2, "the deploy sent once, then the rollback's shift"
    finally:
        box.close()


def test_drills_lists_the_history_and_attaches_the_log_as_a_text_file(box: Sandbox) -> None:
    run(box, "as pablo", "/ops drill")
    finished(box)
    out = run(box, "/ops drills")
    assert "✅" in out and f"`{STAGING}` · passed · safe in" in out
    assert "only visible to you" in out
    assert not [f for f in box.emulator.slack.files() if f["name"] == "ROLLBACK_TEST_LOG.txt"]
    run(box, "/ops drills post")  # asked to post: the log goes to the channel
    (log,) = [f for f in box.emulator.slack.files() if f["name"] == "ROLLBACK_TEST_LOG.txt"]
    text = box.emulator.slack.file_content(log["id"]).decode()
    assert text.startswith("✅ Rollback test passed - ")
    assert f"{STAGING}-drill-" in text and "ok rollback" in text
    assert box.emulator.router.calls.list("slack.files.getUploadURLExternal")
    assert box.emulator.router.calls.list("slack.files.completeUploadExternal")


def test_an_unhealthy_test_revision_is_still_rolled_back_and_the_failure_announced(
    box: Sandbox,
) -> None:
    box.emulator.cloudrun.new_revision_behaviour(healthz_status=500)
    run(box, "as pablo", "/ops drill wa-backend-staging")
    record = finished(box)
    assert record.outcome == "failed"
    assert record.detail["outcome"]["code"] == "test_unhealthy"
    assert serving(box, STAGING) == {BLUE: 100}, "rolled back all the same"
    assert record.time_to_safe_s is not None
    assert any("Rollback drill on `wa-backend-staging` failed" in t for t in team_texts(box))
    out = run(box, "/ops check wa-backend")
    assert "the last drill" in out and "failed" in out


def test_a_drill_refuses_production_and_a_busy_service_and_changes_nothing(box: Sandbox) -> None:
    out = run(box, "as pablo", "/ops drill wa-backend")
    assert "`wa-backend` is a production service: drills run on staging only" in out
    # a scheduled rollback waiting for its approval holds the staging service
    run(box, "as luis", "in #general", f"/rollback {STAGING}")
    out = run(box, "as pablo", "/ops drill")
    assert f"`{STAGING}` is busy" in out
    assert operations(box, "drill") == [] and drills(box) == []
    assert not box.emulator.router.calls.list("run.services.patch")
    refusals = [
        a.detail["why"]
        for a in box.runtime.deps.store.journal.audit()
        if a.action == "drill.refused"
    ]
    assert refusals == ["production", "busy"]
    out = run(box, "as eve", "/ops drill")
    assert "needs the *developer* role" in out


# -- the schedule ------------------------------------------------------------------------------


def test_the_scheduled_drill_runs_once_however_many_ticks_race() -> None:
    box = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)  # Cloud Scheduler
    try:
        assert tick(box) == 200  # the schedule begins: the first drill is due in 30 days
        assert operations(box, "drill") == []
        box.clock.advance(timedelta(days=30, minutes=1).total_seconds())
        codes: list[int] = []
        threads = [threading.Thread(target=lambda: codes.append(tick(box))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes == [200] * 6
        wait_until(
            lambda: bool(drills(box, "passed", "failed")) or not tick(box),
            "the drill",
            describe=lambda: drill_progress(box),
        )
        (drill,) = started(box)  # a tick that lost the race recorded nothing that ran
        assert drill.requested_by == "runback" and DrillData.of(drill).trigger == "schedule"
        assert [d.outcome for d in drills(box)] == ["passed"]
        deploys = [c for c in box.emulator.router.calls.list("run.services.patch")]
        assert len(deploys) == 2, "one deploy, one rollback"
        assert tick(box) == 200 and len(started(box)) == 1, "not due again"
        assert not [t for t in team_texts(box) if "was due" in t], "not missed"
    finally:
        box.close()


def test_a_team_that_never_drilled_has_its_first_drill_when_its_schedule_says() -> None:
    """drill.start anchors the schedule of a team that never drilled (not Runback's first
    tick): due at that hour, not a period later."""
    config = sandbox_config()
    box = Sandbox(config, retry_deadline_s=1.5, scheduler=False)
    try:
        start = box.clock.now() + timedelta(hours=1)
        drill = config.drill.model_copy(update={"start": start})
        box.runtime.deps.config = config.model_copy(update={"drill": drill})
        assert tick(box) == 200 and operations(box, "drill") == []
        box.clock.advance(timedelta(hours=1, minutes=1).total_seconds())
        assert tick(box) == 200
        wait_until(
            lambda: bool(drills(box, "passed", "failed")) or not tick(box),
            "the drill",
            describe=lambda: drill_progress(box),
        )
        (scheduled,) = started(box)
        assert DrillData.of(scheduled).trigger == "schedule"
        assert not [t for t in team_texts(box) if "was due" in t], "on time, not missed"
    finally:
        box.close()


def test_a_drill_overdue_past_its_grace_is_announced_as_missed_once_then_run() -> None:
    """Runback was down (no tick) for 31 days: the first tick says the drill was missed, once,
    and starts it."""
    box = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)
    try:
        tick(box)
        box.clock.advance(timedelta(days=31, hours=1).total_seconds())
        assert tick(box) == 200 and tick(box) == 200
        wait_until(
            lambda: bool(drills(box, "passed", "failed")) or not tick(box),
            "the drill",
            describe=lambda: drill_progress(box),
        )
        missed = [t for t in team_texts(box) if "was due" in t and "has not run" in t]
        assert len(missed) == 1
        assert [d.outcome for d in drills(box, "missed")] == ["missed"]
        assert [
            a.outcome for a in box.runtime.deps.store.journal.audit() if a.action == "drill.missed"
        ] == ["failed"]
        assert len(started(box)) == 1 and drills(box, "passed")
        out = run(box, "/ops drills")
        assert "⚠️" in out and "· missed ·" in out and "· passed ·" in out
    finally:
        box.close()


# -- durability --------------------------------------------------------------------------------


def test_a_drill_killed_during_its_deploy_carries_on_without_deploying_twice(
    world,
) -> None:
    """A real bot process, killed (SIGKILL) once the deploy's operation name is committed."""
    emulator, bot = world
    emulator.cloudrun.operation_delay_s = 2.0
    bot.start()
    send_command(emulator, bot.port, "/ops", "drill", user="U0PABLO")

    def drill() -> Operation | None:
        with bot.store.session() as session:
            return session.scalars(select(Operation).where(Operation.kind == "drill")).first()

    wait_until(lambda: getattr(drill(), "state", "") == "deploy_applying", "the deploy")
    bot.kill()
    bot.start()
    wait_until(lambda: getattr(drill(), "state", "") in ("succeeded", "failed"), "the drill")
    assert drill().state == "succeeded", bot.log_tail()  # type: ignore[union-attr]
    patches = emulator.router.calls.list("run.services.patch")
    deploys = [p for p in patches if "template" in (p.body or {})]
    assert (len(deploys), len(patches)) == (1, 2), "one deploy, one rollback, nothing twice"
    shares = {r["revision"]: r["percent"] for r in emulator.cloudrun.traffic(STAGING)}
    assert shares[BLUE] == 100
    # the drill's own record is written right after its operation ends: wait on it too
    wait_until(lambda: bot.store.drills.drills(outcomes=("passed",)), "the drill's record")
    (record,) = bot.store.drills.drills(outcomes=("passed",))
    assert record.time_to_safe_s is not None
    assert bot.store.operations.lock_holder(STAGING) is None
