"""On-call always reaches safety (issues #21 and #22): an emergency `/rollback SERVICE`, or an
alert whose decision table says "roll back now", leaves the revision serving now whatever holds
the service: a release backing up its database or waiting for its migration's approval, a flag
flip checking its new revision, a staging drill. Each case runs on SQLite and PostgreSQL, with
signed Slack requests into the real Bolt app and the real Google clients against the emulators.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot.ops.drill.states import DrillData
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from bot.sandbox.seed import alert_payload
from bot.store import Operation
from tests.conftest import sandbox_config
from tests.helpers import run, serving, wait_until
from tests.test_release_migrations import DROP, FLAG, IMAGE, submit_form

SERVICE = "wa-backend"
BLUE = "wa-backend-00003"  # serves 100% in the sandbox
BACK = "wa-backend-00002"  # where an emergency rollback of BLUE goes
STAGING = "wa-backend-staging"
STAGING_BLUE = "wa-backend-staging-00003"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def box(request: pytest.FixtureRequest) -> Sandbox:
    return request.getfixturevalue("sandbox" if request.param == "sqlite" else "pg_sandbox")


def latest(box: Sandbox, kind: str) -> Operation | None:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == kind)
        return session.scalars(query.order_by(Operation.created_at.desc())).first()


def tags(box: Sandbox, service: str = SERVICE) -> set[str]:
    return {r["tag"] for r in box.emulator.cloudrun.traffic(service) if r["tag"]}


def card(box: Sandbox, operation: Operation) -> str:
    message = box.emulator.slack.message(operation.channel, operation.message_ts)
    return json.dumps(message["blocks"], ensure_ascii=False)


def alert(box: Sandbox, service: str = SERVICE) -> str:
    """Cloud Monitoring's alert on ``service``; returns the incident's id."""
    response = box.post_alert(alert_payload(box.emulator, service, "open", "0.on-call-1"))
    box.runtime.engine.wait_idle(timeout_s=60)
    assert response.status_code == 200, response.text
    return str(response.json()["incident"])


def backing_up(box: Sandbox) -> Operation:
    """marta's release with a destructive migration, waiting for its pre-deployment backup."""
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --migration")
    submit_form(box, DROP, flag=FLAG)
    release = latest(box, "release")
    assert release is not None and release.state == "backing_up"
    return release


def stood_aside_for_a_rollback(box: Sandbox, stopped: Operation, by: str) -> Operation:
    """``stopped`` ended for the emergency, whose rollback moved traffic off BLUE."""
    box.runtime.engine.wait_idle(timeout_s=60)
    ended = box.runtime.deps.store.operations.operation(stopped.id)
    assert ended is not None and ended.state == "cancelled", ended.state if ended else None
    assert ended.data["outcome"]["code"] == "stood_aside"
    assert ended.data["outcome"]["by"] == box.users.get(by, by)
    rollback = latest(box, "rollback")
    assert rollback is not None and rollback.state == "succeeded", rollback
    assert rollback.from_revision == BLUE and rollback.to_revision == BACK
    assert serving(box) == {BACK: 100}, "traffic left the revision serving when on-call asked"
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None
    assert "emergency rollback" in card(box, ended)
    return rollback


# -- a release ------------------------------------------------------------------------------------


def test_an_on_call_rollback_during_the_backup_leaves_the_serving_revision(box: Sandbox) -> None:
    release = backing_up(box)
    run(box, "as ana", "in incidents", f"/rollback {SERVICE} checkout errors")
    stood_aside_for_a_rollback(box, release, "ana")
    [patch] = box.emulator.router.calls.list("run.services.patch")
    assert "template" not in (patch.body or {}), "green was never deployed"
    run(box, "wait 3m")  # the backup finishes in Cloud SQL: the release stays stopped
    assert latest(box, "release").state == "cancelled" and serving(box) == {BACK: 100}


def test_roll_back_now_from_an_alert_during_the_backup_mitigates_the_incident(
    box: Sandbox,
) -> None:
    box.emulator.cloudrun.set_behaviour(BLUE, error_rate=0.07)
    run(box, "wait 9m")  # a whole bad window in Monitoring
    release = backing_up(box)
    incident = alert(box)
    rollback = stood_aside_for_a_rollback(box, release, "runback")
    record = box.runtime.deps.store.incidents.incident(incident)
    assert record is not None and record.state == "mitigated", record.state if record else None
    assert record.operation_id == rollback.id


def test_an_on_call_rollback_while_the_migration_waits_for_approval_leaves_blue(
    box: Sandbox,
) -> None:
    release = backing_up(box)
    run(box, "wait 3m")
    waiting = latest(box, "release")
    assert waiting.state == "awaiting_approval" and waiting.data["awaiting"] == "migration"
    assert "green" in tags(box)
    run(box, "as luis", "in incidents")
    approve_later, _ = box.click_body("Approve migration")
    run(box, "as ana", "in incidents", f"/rollback {SERVICE}")
    stood_aside_for_a_rollback(box, release, "ana")
    assert tags(box) == set(), "green's tag went with the rollback"
    approval = box.runtime.deps.store.approvals.approval_for(release.id)
    assert approval is not None and approval.status == "cancelled"
    patches = len(box.emulator.router.calls.list("run.services.patch"))
    assert box.post(approve_later).status_code == 200  # too late: nothing moves
    box.runtime.engine.wait_idle(timeout_s=60)
    assert len(box.emulator.router.calls.list("run.services.patch")) == patches
    assert serving(box) == {BACK: 100}


def test_rejecting_a_migration_mitigates_no_incident(box: Sandbox) -> None:
    """A release taken back before green had traffic moved nothing: "rolled back" is no
    mitigation of an incident on blue."""
    backing_up(box)
    run(box, "wait 3m")
    box.emulator.cloudrun.set_behaviour(BLUE, error_rate=0.03)  # observe, not roll back now
    run(box, "wait 9m")
    incident = alert(box)
    run(box, "as sofia", "in incidents", "click Reject")
    assert latest(box, "release").state == "rolled_back" and serving(box) == {BLUE: 100}
    record = box.runtime.deps.store.incidents.incident(incident)
    assert record is not None and record.state == "open"


# -- a flag flip ----------------------------------------------------------------------------------


def checking_a_flip(box: Sandbox) -> Operation:
    """marta's flip, its new revision being checked on its tag URL (the check is slow)."""
    box.emulator.router.faults.add(Fault("service.config_flags", None, delay_ms=3000, times=1))
    run(box, "as marta", "in incidents")
    box.post(box.slash_body(f"/flag {SERVICE} NEW_CHECKOUT on"))

    def verifying() -> bool:
        flip = latest(box, "flag")
        return flip is not None and flip.state == "verifying"

    wait_until(verifying, "the flip to check its new revision")
    wait_until(
        lambda: bool(box.emulator.router.calls.list("service.config_flags")), "the slow check"
    )
    flip = latest(box, "flag")
    assert flip is not None
    return flip


def test_an_on_call_rollback_during_a_flips_check_leaves_the_serving_revision(
    box: Sandbox,
) -> None:
    flip = checking_a_flip(box)
    run(box, "as ana", f"/rollback {SERVICE} carts break")
    stood_aside_for_a_rollback(box, flip, "ana")
    assert "flag" not in tags(box), "the new revision's tag went with the rollback"


def test_roll_back_now_from_an_alert_during_a_flips_check_mitigates_the_incident(
    box: Sandbox,
) -> None:
    box.emulator.cloudrun.set_behaviour(BLUE, error_rate=0.07)
    run(box, "wait 9m")
    flip = checking_a_flip(box)
    incident = alert(box)
    rollback = stood_aside_for_a_rollback(box, flip, "runback")
    record = box.runtime.deps.store.incidents.incident(incident)
    assert record is not None and record.state == "mitigated"
    assert record.operation_id == rollback.id


# -- a staging drill ------------------------------------------------------------------------------


def test_a_staging_drill_gives_way_to_an_on_call_rollback(box: Sandbox) -> None:
    box.emulator.cloudrun.operation_delay_s = 2.0  # the test revision takes a while to deploy
    run(box, "as pablo")
    box.post(box.slash_body("/ops drill"))

    def deploying() -> bool:
        drill = latest(box, "drill")
        return drill is not None and drill.state == "deploy_applying"

    wait_until(deploying, "the drill to deploy its test revision")
    drill = latest(box, "drill")
    assert drill is not None
    out = run(box, "as ana", "in incidents", f"/rollback {STAGING} staging is down")
    assert "busy" not in out
    box.runtime.engine.wait_idle(timeout_s=60)
    ended = box.runtime.deps.store.operations.operation(drill.id)
    assert ended is not None and ended.state == "failed"
    assert ended.data["outcome"]["code"] == "stood_aside"
    assert serving(box, STAGING) == {STAGING_BLUE: 100}, "the test revision lost its traffic"
    assert box.runtime.deps.store.operations.lock_holder(STAGING) is None
    [record] = box.runtime.deps.store.drills.drills(outcomes=("failed",))
    assert record.detail["outcome"]["code"] == "stood_aside"


def test_a_staging_drill_that_sent_nothing_yet_stands_aside(box: Sandbox) -> None:
    """Before its test revision is sent, the drill ends at once and the on-call rollback goes
    back from the revision serving now."""
    box.emulator.router.faults.add(Fault("run.services.get", None, delay_ms=3000, times=1))
    run(box, "as pablo")
    box.post(box.slash_body("/ops drill"))
    wait_until(
        lambda: bool(box.emulator.router.calls.list("run.services.get")), "the drill's first read"
    )
    drill = latest(box, "drill")
    assert drill is not None and drill.state == "deploying" and not drill.data.get("blue")
    run(box, "as ana", "in incidents", f"/rollback {STAGING}")
    box.runtime.engine.wait_idle(timeout_s=60)
    ended = box.runtime.deps.store.operations.operation(drill.id)
    assert ended is not None and ended.state == "failed"
    assert ended.data["outcome"]["code"] == "stood_aside"
    rollback = latest(box, "rollback")
    assert rollback is not None and rollback.state == "succeeded"
    assert rollback.from_revision == STAGING_BLUE
    assert serving(box, STAGING) == {rollback.to_revision: 100}
    assert not any(
        "template" in (p.body or {}) for p in box.emulator.router.calls.list("run.services.patch")
    ), "the test revision was never sent"


def test_a_drill_sending_its_test_revision_says_to_ask_again() -> None:
    """In the second the drill's deploy is being sent, what will serve is not known yet: the
    engineer is told so, and nothing changes. (No scheduler: the drill stays as written.)"""
    box = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)
    try:
        store, now = box.runtime.deps.store, box.clock.now()
        drill = store.operations.create_operation(
            now,
            kind="drill",
            service=STAGING,
            requested_by=box.users["pablo"],
            channel="C0GENERAL",
            reason="",
            emergency=False,
            state="deploying",
            to_revision=f"{STAGING}-drill-20260501-120000",
            data=DrillData(
                requested_at=now.isoformat(), trigger="command", blue=STAGING_BLUE, image="img"
            ).stored(),
        )
        assert store.operations.acquire_lock(STAGING, drill.id, now)
        out = run(box, "as ana", "in incidents", f"/rollback {STAGING}")
        assert f"Run `/rollback {STAGING}` again in a few seconds" in out
        assert store.operations.operation(drill.id).state == "deploying"
        assert latest(box, "rollback") is None
        assert box.emulator.router.calls.list("run.services.patch") == []
    finally:
        box.close()
