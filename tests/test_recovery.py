"""Nothing stays stuck for want of database access: half-applied decisions are finished by the
recovery pass, an on-call emergency takes a lock that is not moving traffic, and a button only
decides requests of its own kind. (The `kill -9` versions are in test_processes.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.ops.release.states import ReleaseData
from bot.sandbox.console import Sandbox
from bot.sandbox.slack_payloads import button_click, find_button
from bot.store import Operation
from tests.conftest import sandbox_config
from tests.helpers import run, serving

SERVICE = "wa-backend"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    """No scheduler: the recovery pass runs only when a test says so (``wait`` or ``tick``)."""
    sandbox = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)
    try:
        yield sandbox
    finally:
        sandbox.close()


def operations(box: Sandbox, kind: str | None = None) -> list[Operation]:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).order_by(Operation.created_at)
        if kind:
            query = query.where(Operation.kind == kind)
        return list(session.scalars(query))


def ephemerals(box: Sandbox) -> list[str]:
    return [m["text"] for m in box.emulator.slack.messages() if m.get("ephemeral_to")]


def crash_after_the_decision_only(box: Sandbox, operation: Operation, user: str) -> None:
    """What an older bot killed mid-click left: the approval decided, the operation not moved."""
    store = box.runtime.deps.store
    approval = store.approvals.approval_for(operation.id)
    assert approval is not None
    assert store.approvals.decide_approval(approval.id, "approved", user, box.clock.now())


def tick(box: Sandbox) -> None:
    box.runtime.engine.tick()
    box.runtime.engine.wait_idle(timeout_s=60)


def click_with_value(box: Sandbox, label: str, value: str, user: str) -> None:
    """Click ``label`` as ``user``, the button carrying ``value`` (a forged or stale id)."""
    found = find_button(box.emulator.slack.messages(), label)
    assert found is not None, label
    message, button, block_id = found
    user_id = box.users[user]
    url = box.emulator.slack.new_response_url(message["channel"], user_id, message["ts"])
    body = button_click(
        message, {**button, "value": value}, block_id, user_id, user, "incidents", url
    )
    assert box.post(body).status_code == 200
    box.runtime.engine.wait_idle(timeout_s=30)


# -- a decision a crash left half-applied ---------------------------------------------------------


def test_on_call_rollback_takes_over_a_lock_left_by_a_half_decided_request(box: Sandbox) -> None:
    run(box, "as luis", "/rollback wa-backend planned move")
    (planned,) = operations(box)
    crash_after_the_decision_only(box, planned, "U0SOFIA")

    run(box, "as ana", "/rollback wa-backend checkout errors")
    assert not any("is busy" in text for text in ephemerals(box))
    planned_now, emergency = operations(box)
    assert planned_now.state == "cancelled"
    assert emergency.state == "succeeded" and serving(box) == {"wa-backend-00002": 100}
    superseded = [
        a for a in box.runtime.deps.store.journal.audit() if a.action == "rollback.superseded"
    ]
    assert superseded and superseded[-1].operation_id == planned.id


def test_recovery_pass_finishes_a_half_applied_rollback_approval(box: Sandbox) -> None:
    run(box, "as luis", "/rollback wa-backend planned move")
    (planned,) = operations(box)
    crash_after_the_decision_only(box, planned, "U0SOFIA")
    tick(box)
    (operation,) = operations(box)
    assert operation.state == "succeeded" and serving(box) == {"wa-backend-00002": 100}
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None


def test_recovery_pass_finishes_a_half_applied_approve_100(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")
    run(box, "wait 6m", "wait 6m")  # Monitoring shows each minute ~3 minutes late
    (release,) = operations(box, "release")
    assert release.state == "awaiting_approval"
    crash_after_the_decision_only(box, release, "U0LUIS")
    tick(box)
    (release,) = operations(box, "release")
    assert (
        release.state == "judging" and ReleaseData.of(release).full_traffic_approved_by == "U0LUIS"
    )
    assert serving(box) == {release.to_revision: 100}


def test_a_lock_held_by_an_ended_operation_is_freed(box: Sandbox) -> None:
    run(box, "as ana", "/rollback wa-backend")
    (first,) = operations(box)
    store = box.runtime.deps.store
    assert store.operations.acquire_lock(
        SERVICE, first.id, box.clock.now()
    )  # a crash before its unlock
    run(box, "/rollback wa-backend wa-backend-00001")  # named: no repeat question
    assert not any("is busy" in text for text in ephemerals(box))
    assert serving(box) == {"wa-backend-00001": 100}

    assert store.operations.acquire_lock(SERVICE, first.id, box.clock.now())
    tick(box)
    assert store.operations.lock_holder(SERVICE) is None


def test_an_approval_a_crash_left_pending_still_expires_as_the_card_says(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")
    run(box, "wait 6m", "wait 6m")  # Monitoring shows each minute ~3 minutes late
    (release,) = operations(box, "release")
    approval = box.runtime.deps.store.approvals.approval_for(release.id)
    assert approval is not None and approval.status == "pending"
    run(box, "wait 31m")
    (release,) = operations(box, "release")
    assert release.state == "rolled_back" and release.data["outcome"]["code"] == "approval_expired"
    assert box.runtime.deps.store.approvals.approval_for(release.id).status == "expired"


# -- buttons decide only requests of their own kind -----------------------------------------------


def test_buttons_refuse_approvals_of_another_kind_and_change_nothing(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")
    run(box, "wait 6m", "wait 6m")  # Monitoring shows each minute ~3 minutes late
    (release,) = operations(box, "release")
    run(box, "as luis", "/rollback wa-backend-staging planned move")
    (scheduled,) = operations(box, "rollback")
    store = box.runtime.deps.store
    release_approval = store.approvals.approval_for(release.id)
    rollback_approval = store.approvals.approval_for(scheduled.id)
    assert release_approval is not None and rollback_approval is not None
    traffic_before = serving(box)

    click_with_value(box, "Approve", release_approval.id, "sofia")  # rollback button
    click_with_value(box, "Approve 100%", rollback_approval.id, "sofia")  # release button

    assert sum("does not belong" in text for text in ephemerals(box)) == 2
    assert store.approvals.approval_for(release.id).status == "pending"
    assert store.approvals.approval_for(scheduled.id).status == "pending"
    assert [o.state for o in operations(box)] == ["awaiting_approval", "awaiting_approval"]
    assert serving(box) == traffic_before
    refusals = [a for a in store.journal.audit() if a.detail.get("why") == "wrong_kind"]
    assert len(refusals) == 2
