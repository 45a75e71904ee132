"""`/rollback` end to end: signed Slack requests into the real Bolt app over HTTP, the real
Google and Slack client libraries against the emulators, the store underneath."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from bot.ops.rollback import RollbackData
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from tests.helpers import failure_code, patches, run_lines, serving

INCIDENTS = "C0INCIDENTS"
SERVICE = "wa-backend"


def channel_messages(box: Sandbox, channel: str = INCIDENTS) -> list[dict]:
    return [m for m in box.emulator.slack.messages(channel) if not m.get("ephemeral_to")]


def ephemerals(box: Sandbox) -> list[str]:
    return [m["text"] for m in box.emulator.slack.messages() if m.get("ephemeral_to")]


def last_operation(box: Sandbox):
    store = box.runtime.deps.store
    from sqlalchemy import select

    from bot.store import Operation

    with store.session() as session:
        return session.scalars(select(Operation).order_by(Operation.created_at.desc())).first()


# -- the emergency path ------------------------------------------------------------------------


def test_on_call_rolls_back_to_previous_revision_and_verifies_healthz(sandbox: Sandbox) -> None:
    output = run_lines(sandbox, "as ana", "/rollback wa-backend checkout errors")

    assert serving(sandbox) == {"wa-backend-00002": 100}
    assert len(patches(sandbox)) == 1
    patch = patches(sandbox)[0]
    assert patch.query["updateMask"] == ["traffic"]  # type: ignore[attr-defined]
    body = patch.body  # type: ignore[attr-defined]
    assert body["etag"], "the PATCH must carry the service's etag"
    assert body["traffic"] == [{"type": 2, "revision": "wa-backend-00002", "percent": 100}]
    assert sandbox.emulator.router.calls.list("service.healthz"), "healthz was never probed"
    text = "\n".join(output)
    assert "Done" in text and "pinned" in text and "@ana" in text
    assert "wa-backend-00003" in text and "wa-backend-00002" in text
    done = last_operation(sandbox)
    kept = RollbackData.of(done)
    assert done.state == "succeeded" and kept.health is not None and kept.error is None
    assert (kept.from_.revision, kept.to.revision) == ("wa-backend-00003", "wa-backend-00002")
    assert set(kept.timings) == {"shift", "wait", "verify"}
    assert kept.stored() == {k: v for k, v in done.data.items() if k != "seq"}, "as typed"


def test_one_status_message_updated_in_place(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    cards = channel_messages(sandbox)
    assert len(cards) == 1, "the card is posted once and then updated"
    assert cards[0]["version"] >= 3  # requested -> shifting -> verifying -> done
    assert "done" in cards[0]["text"]
    assert len(sandbox.emulator.router.calls.list("slack.chat.postMessage")) == 1


def test_every_step_is_audited_in_database_and_cloud_logging(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    actions = [a.action for a in sandbox.runtime.deps.store.journal.audit()]
    assert actions[:2] == ["rollback.requested", "rollback.approved"]
    assert "cloudrun.traffic_update" in actions and actions[-1] == "rollback.succeeded"
    logged = [e["jsonPayload"]["action"] for e in sandbox.emulator.logging.entries()]
    assert logged == actions
    entry = sandbox.emulator.logging.entries()[0]["jsonPayload"]
    assert entry["actor"] == "U0ANA" and entry["service"] == SERVICE


def test_a_second_rollback_does_not_go_back_to_the_bad_revision(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    run_lines(sandbox, "/rollback wa-backend", "click Roll back to wa-backend-00001")  # asks first
    assert serving(sandbox) == {"wa-backend-00001": 100}


def test_named_revision(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend wa-backend-00001 go way back")
    assert serving(sandbox) == {"wa-backend-00001": 100}
    assert last_operation(sandbox).reason == "go way back"


# -- authorization -------------------------------------------------------------------------------


def test_no_role_is_refused_and_nothing_changes(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as eve", "/rollback wa-backend")
    assert patches(sandbox) == [] and serving(sandbox) == {"wa-backend-00003": 100}
    assert any("tech lead" in text for text in ephemerals(sandbox))
    refusal = sandbox.runtime.deps.store.journal.audit()[-1]
    assert (refusal.action, refusal.outcome, refusal.actor) == (
        "rollback.refused",
        "refused",
        "U0EVE",
    )


def test_on_call_outside_incidents_channel_is_told_where_to_go(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "in #general", "/rollback wa-backend")
    assert patches(sandbox) == []
    assert any("#incidents" in text for text in ephemerals(sandbox))


def test_scheduled_rollback_needs_another_tech_lead(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as luis", "in #general", "/rollback wa-backend planned revert")
    card = channel_messages(sandbox, "C0GENERAL")[-1]
    assert "Approve" in str(card["blocks"]) and patches(sandbox) == []

    run_lines(sandbox, "click Approve")  # luis approving his own request
    run_lines(sandbox, "as marta", "click Approve")  # a senior developer is not a tech lead
    assert patches(sandbox) == []
    notes = ephemerals(sandbox)
    assert any("another tech lead" in n for n in notes)
    assert any("Only a *tech lead*" in n for n in notes)

    run_lines(sandbox, "as sofia", "click Approve")
    assert serving(sandbox) == {"wa-backend-00002": 100}
    card = sandbox.emulator.slack.message("C0GENERAL", card["ts"])
    assert "Approved by <@U0SOFIA>" in str(card["blocks"])
    assert "rollback_approve" not in str(card["blocks"]), "buttons disappear once decided"

    assert not _has_button(sandbox), "a decided card has no buttons left to click"


def _has_button(box: Sandbox) -> bool:
    from bot.sandbox.slack_payloads import find_button

    return find_button(box.emulator.slack.messages(), "Approve") is not None


def test_stale_click_on_a_decided_request_gets_a_polite_note(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as luis", "in #general", "/rollback wa-backend")
    stale_click, _ = sandbox.click_body("Approve")  # captured before anyone decides
    run_lines(sandbox, "as sofia", "click Reject")
    assert "Rejected by" in str(channel_messages(sandbox, "C0GENERAL")[-1]["blocks"])
    run_lines(sandbox, "as sofia")
    assert sandbox.post(stale_click).status_code == 200
    sandbox.runtime.engine.wait_idle()
    assert any("already rejected" in n for n in ephemerals(sandbox))
    assert patches(sandbox) == []


def test_ten_concurrent_approve_clicks_make_exactly_one_traffic_update(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as luis", "in #general", "/rollback wa-backend")
    run_lines(sandbox, "as sofia")
    bodies = [sandbox.click_body("Approve")[0] for _ in range(10)]
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda b=b: statuses.append(sandbox.post(b).status_code))
        for b in bodies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sandbox.runtime.engine.wait_idle()
    assert statuses == [200] * 10
    assert len(patches(sandbox)) == 1
    assert serving(sandbox) == {"wa-backend-00002": 100}
    approvals = [
        a for a in sandbox.runtime.deps.store.journal.audit() if a.action == "rollback.approved"
    ]
    assert len(approvals) == 1


def test_expired_request_cannot_be_approved(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as luis", "in #general", "/rollback wa-backend")
    store = sandbox.runtime.deps.store
    operation = last_operation(sandbox)
    approval = store.approvals.approval_for(operation.id)
    from sqlalchemy import update

    from bot.store import ApprovalRequest

    with store.session() as session:
        session.execute(
            update(ApprovalRequest)
            .where(ApprovalRequest.id == approval.id)
            .values(expires_at=approval.created_at - timedelta(seconds=1))
        )
    stale_click, _ = sandbox.click_body("Approve")
    sandbox.runtime.engine.tick()
    sandbox.runtime.engine.wait_idle()
    assert "Expired" in str(channel_messages(sandbox, "C0GENERAL")[-1]["blocks"])
    run_lines(sandbox, "as sofia")
    sandbox.post(stale_click)
    sandbox.runtime.engine.wait_idle()
    assert any("expired" in n for n in ephemerals(sandbox))
    assert patches(sandbox) == [] and store.operations.lock_holder(SERVICE) is None


def test_emergency_rollback_supersedes_a_pending_scheduled_one(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as luis", "in #general", "/rollback wa-backend")
    run_lines(sandbox, "as ana", "in #incidents", "/rollback wa-backend")
    assert serving(sandbox) == {"wa-backend-00002": 100}
    assert "Cancelled" in str(channel_messages(sandbox, "C0GENERAL")[-1]["blocks"])


# -- bad input ----------------------------------------------------------------------------------


def test_empty_text_gets_usage_in_the_ack(sandbox: Sandbox) -> None:
    output = run_lines(sandbox, "as ana", "/rollback")
    assert any("Usage" in line for line in output) and patches(sandbox) == []


def test_unknown_service_lists_the_known_ones(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-frontend")
    assert any("wa-backend" in n and "wa-backend-staging" in n for n in ephemerals(sandbox))
    assert patches(sandbox) == []


def test_unknown_revision_lists_recent_ones(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend wa-backend-09999")
    note = ephemerals(sandbox)[-1]
    assert "wa-backend-09999" in note and "wa-backend-00001" in note
    assert patches(sandbox) == []


def test_target_already_serving(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend wa-backend-00003")
    assert "already serves 100%" in ephemerals(sandbox)[-1] and patches(sandbox) == []


def test_hostile_reason_is_shown_not_executed(sandbox: Sandbox) -> None:
    run_lines(
        sandbox, "as ana", "/rollback wa-backend <!channel> <https://evil.example|login> <@U0LUIS>"
    )
    blocks = str(channel_messages(sandbox)[-1]["blocks"])
    assert "&lt;!channel&gt;" in blocks and "<!channel>" not in blocks
    assert "<https://evil" not in blocks and "&lt;@U0LUIS&gt;" in blocks


def test_second_rollback_while_one_runs_says_who_runs_what(sandbox: Sandbox) -> None:
    sandbox.emulator.cloudrun.operation_delay_s = 1.0
    run_lines(sandbox, "as ana")
    sandbox.post(sandbox.slash_body("/rollback wa-backend"))
    deadline = time.monotonic() + 5
    while not patches(sandbox) and time.monotonic() < deadline:
        time.sleep(0.02)
    run_lines(sandbox, "/rollback wa-backend")
    assert any("is busy" in n and "<@U0ANA>" in n for n in ephemerals(sandbox))
    assert len(patches(sandbox)) == 1
    assert serving(sandbox) == {"wa-backend-00002": 100}


# -- Google API faults ----------------------------------------------------------------------------


def test_patch_503_twice_then_ok_is_retried(sandbox: Sandbox) -> None:
    sandbox.emulator.router.faults.add(Fault("run.services.patch", 503, times=2))
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    assert len(patches(sandbox)) == 3
    assert serving(sandbox) == {"wa-backend-00002": 100}
    assert last_operation(sandbox).state == "succeeded"


def test_patch_503_always_fails_loudly_and_says_traffic_is_unchanged(sandbox: Sandbox) -> None:
    sandbox.emulator.router.faults.add(Fault("run.services.patch", 503, times=None))
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    assert serving(sandbox) == {"wa-backend-00003": 100}
    assert last_operation(sandbox).state == "failed"
    alert = channel_messages(sandbox)[-1]
    assert "FAILED" in alert["text"] and "`wa-backend-00003` 100%" in str(alert["blocks"])
    assert sandbox.runtime.deps.store.operations.lock_holder(SERVICE) is None, (
        "the lock must be released"
    )


def test_etag_conflict_rereads_and_retries_once(sandbox: Sandbox) -> None:
    sandbox.emulator.router.faults.add(Fault("run.services.patch", 409, times=1))
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    assert len(patches(sandbox)) == 2
    assert serving(sandbox) == {"wa-backend-00002": 100}


def test_etag_conflict_twice_fails_without_forcing(sandbox: Sandbox) -> None:
    sandbox.emulator.router.faults.add(Fault("run.services.patch", 409, times=2))
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    assert len(patches(sandbox)) == 2
    assert serving(sandbox) == {"wa-backend-00003": 100}
    assert "etag conflict" in str(channel_messages(sandbox)[-1]["blocks"])


def test_failed_operation_reports_the_real_traffic(sandbox: Sandbox) -> None:
    sandbox.emulator.cloudrun.fail_next_operations("quota exceeded for revisions")
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    operation = last_operation(sandbox)
    assert operation.state == "failed" and failure_code(operation) == "operation_failed"
    alert = str(channel_messages(sandbox)[-1]["blocks"])
    assert "quota exceeded" in alert and "`wa-backend-00003` 100%" in alert


def test_healthz_failing_after_the_shift_is_loud(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "set wa-backend-00002 healthz=500", "/rollback wa-backend")
    assert serving(sandbox) == {"wa-backend-00002": 100}
    operation = last_operation(sandbox)
    assert operation.state == "failed" and failure_code(operation) == "healthz_failed"
    alert = channel_messages(sandbox)[-1]
    assert "FAILED" in alert["text"]
    assert "IS on `wa-backend-00002`" in str(alert["blocks"]) and "500" in str(alert["blocks"])


def test_cloud_run_unreadable_at_request_changes_nothing(sandbox: Sandbox) -> None:
    sandbox.emulator.router.faults.add(Fault("run.services.get", 503, times=None))
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    assert "Cloud Run did not answer" in ephemerals(sandbox)[-1]
    assert (
        patches(sandbox) == []
        and sandbox.runtime.deps.store.operations.lock_holder(SERVICE) is None
    )


# -- the other commands -------------------------------------------------------------------------


def test_traffic_shows_the_split_and_running_operation(sandbox: Sandbox) -> None:
    output = run_lines(sandbox, "as pablo", "/traffic wa-backend")
    text = "\n".join(output)
    assert "wa-backend-00003" in text and "100%" in text and "No operation in progress" in text


def test_whoami_lists_roles_and_permissions(sandbox: Sandbox) -> None:
    output = "\n".join(run_lines(sandbox, "as ana", "/ops whoami"))
    assert "on-call engineer" in output and "Emergency rollback — you may" in output
    output = "\n".join(run_lines(sandbox, "as marta", "/ops whoami"))
    assert "senior developer" in output and "Production canary (10%) — you may" in output


# -- a Cloud Run operation slower than operation_timeout_s ------------------------------------


def test_operation_slower_than_the_timeout_is_followed_to_the_end_not_failed() -> None:
    from tests.conftest import sandbox_config

    box = Sandbox(sandbox_config(operation_timeout_s=0.3), retry_deadline_s=1.5)
    try:
        box.emulator.cloudrun.operation_delay_s = 1.5  # five timeouts' worth of waiting
        run_lines(box, "as ana", "/rollback wa-backend")
        operation = last_operation(box)
        assert operation.state == "succeeded", failure_code(operation)
        assert serving(box) == {"wa-backend-00002": 100}
        events = [e.kind for e in box.runtime.deps.store.journal.timeline(operation.id)]
        assert "operation_slow" in events and events.index("operation_slow") < events.index(
            "healthz_verified"
        ), "the health check ran after the slow operation ended"
        assert "failed" not in events
        cards = channel_messages(box)
        assert len(cards) == 1 and "done" in cards[0]["text"], "no failure alert, card corrected"
        assert len(patches(box)) == 1
    finally:
        box.close()
