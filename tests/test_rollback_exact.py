"""`/rollback` does exactly what was asked, or nothing (issue 7): the second word read against the
real revisions, a repeat soon after a rollback asks first, a target must be Ready, and a failed
health check offers the next step. Real Bolt, real Google and Slack clients, the emulators."""

from __future__ import annotations

import json

from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from bot.sandbox.seed import alert_payload
from tests.helpers import failure_code, patches, run_lines, serving, wait_until
from tests.test_rollback_flow import (
    INCIDENTS,
    SERVICE,
    channel_messages,
    ephemerals,
    last_operation,
)

UNCHANGED = {"wa-backend-00003": 100}


def refusals(box: Sandbox) -> list[dict]:
    return [
        {"why": a.detail.get("why"), "revision": a.revision}
        for a in box.runtime.deps.store.journal.audit()
        if a.action == "rollback.refused"
    ]


def last_ephemeral(box: Sandbox) -> str:
    """Everything the newest ephemeral message shows (its blocks, not only its fallback)."""
    notes = [m for m in box.emulator.slack.messages() if m.get("ephemeral_to")]
    return json.dumps(notes[-1]["blocks"], ensure_ascii=False)


def not_ready(box: Sandbox, revision: str, why: str = "Container failed to start") -> None:
    box.emulator.cloudrun.set_ready(revision, False, why)


# -- 1. the second word -------------------------------------------------------------------------


def test_a_typo_in_the_revision_is_refused_with_the_closest_real_one(sandbox: Sandbox) -> None:
    run_lines(
        sandbox, "as ana", "in #incidents", "/rollback wa-backend wa-backnd-00001 checkout errors"
    )
    assert patches(sandbox) == [] and serving(sandbox) == UNCHANGED
    note = ephemerals(sandbox)[-1]
    assert "`wa-backnd-00001` is not a revision of `wa-backend`" in note
    assert "Did you mean `wa-backend-00001`?" in note
    assert refusals(sandbox) == [{"why": "unknown_revision", "revision": "wa-backnd-00001"}]
    assert last_operation(sandbox) is None


def test_words_that_look_like_revisions_are_never_reasons(sandbox: Sandbox) -> None:
    for word, meant in [
        ("WA-BACKEND-00001", "wa-backend-00001"),  # case
        ("wa-backend-0001", "wa-backend-00001"),  # a missing digit
        ("wa-backend-00009", ""),  # the service's prefix, no such revision
        ("backend-00002", "wa-backend-00002"),  # ends in a dash and digits
        ("1", "wa-backend-00001"),  # only digits, and no wa-backend-1
    ]:
        run_lines(sandbox, "as ana", f"/rollback wa-backend {word} errors")
        note = ephemerals(sandbox)[-1]
        assert f"`{word}` is not a revision of `wa-backend`" in note, word
        if meant:
            assert f"Did you mean `{meant}`" in note, (word, note)
    assert patches(sandbox) == [] and last_operation(sandbox) is None
    assert "start it with a word" in ephemerals(sandbox)[-1]  # `1 errors`: a bare number


def test_a_revision_of_another_service_is_refused_naming_it(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend wa-backend-staging-00001")
    note = ephemerals(sandbox)[-1]
    assert "named like a revision of `wa-backend-staging`, not of `wa-backend`" in note
    assert patches(sandbox) == [] and refusals(sandbox)[-1]["why"] == "other_service"


def test_the_short_form_names_the_services_revision(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend 00001 go way back")
    assert serving(sandbox) == {"wa-backend-00001": 100}
    operation = last_operation(sandbox)
    assert (operation.to_revision, operation.reason) == ("wa-backend-00001", "go way back")


def test_a_reason_with_digits_stays_a_reason(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend errors since 10:30 after v1.2.0")
    assert serving(sandbox) == {"wa-backend-00002": 100}
    assert last_operation(sandbox).reason == "errors since 10:30 after v1.2.0"
    run_lines(sandbox, "wait 20m", "/rollback wa-backend v1.2.0 broke checkout")
    assert last_operation(sandbox).reason == "v1.2.0 broke checkout"
    assert serving(sandbox) == {"wa-backend-00001": 100}


# -- 2. a repeat soon after a rollback asks first -----------------------------------------------


def test_a_repeat_shows_the_previous_rollback_and_asks(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend", "/rollback wa-backend still failing")
    assert serving(sandbox) == {"wa-backend-00002": 100} and len(patches(sandbox)) == 1
    question = last_ephemeral(sandbox)
    assert "already rolled back" in question and "<@U0ANA>" in question
    assert "`wa-backend-00003` → `wa-backend-00002`" in question
    assert "to `wa-backend-00001`" in question or "`wa-backend-00001`" in question
    asked = [a for a in sandbox.runtime.deps.store.journal.audit() if a.outcome == "pending"]
    assert [a.action for a in asked] == ["rollback.confirmation_requested"]

    run_lines(sandbox, "click Roll back to wa-backend-00001")
    assert serving(sandbox) == {"wa-backend-00001": 100}
    operation = last_operation(sandbox)
    assert (operation.requested_by, operation.reason) == ("U0ANA", "still failing")


def test_only_the_asker_can_confirm_and_a_stale_question_is_refused(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend", "/rollback wa-backend")
    stale_click, _ = sandbox.click_body("Roll back to wa-backend-00001")
    run_lines(sandbox, "as luis", "click Roll back to wa-backend-00001")
    assert "Only <@U0ANA>" in ephemerals(sandbox)[-1] and len(patches(sandbox)) == 1

    run_lines(sandbox, "as ana", "/rollback wa-backend wa-backend-00003 back to the newest")
    assert serving(sandbox) == {"wa-backend-00003": 100}  # named: runs as asked, no question
    sandbox.post(stale_click)
    sandbox.runtime.engine.wait_idle()
    assert "out of date" in ephemerals(sandbox)[-1]
    assert serving(sandbox) == {"wa-backend-00003": 100} and len(patches(sandbox)) == 2


def test_retrying_a_rollback_that_never_moved_traffic_does_not_ask(sandbox: Sandbox) -> None:
    sandbox.emulator.router.faults.add(Fault("run.services.patch", 503, times=None))
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    assert last_operation(sandbox).state == "failed" and serving(sandbox) == UNCHANGED
    sandbox.emulator.router.faults.clear()
    run_lines(sandbox, "/rollback wa-backend")
    assert serving(sandbox) == {"wa-backend-00002": 100}


def test_after_the_window_a_rollback_runs_without_asking(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend", "wait 16m", "/rollback wa-backend")
    assert serving(sandbox) == {"wa-backend-00001": 100}


# -- 3. the target must be Ready; a failed health check offers the next step ---------------------


def test_a_not_ready_target_is_refused_naming_the_next_ready_one(sandbox: Sandbox) -> None:
    not_ready(sandbox, "wa-backend-00002")
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    note = ephemerals(sandbox)[-1]
    assert "`wa-backend-00002` (the revision I would go back to) is not ready" in note
    assert "Container failed to start" in note and "`wa-backend-00001`" in note
    assert patches(sandbox) == [] and refusals(sandbox)[-1]["why"] == "not_ready"


def test_an_approved_rollback_checks_readiness_again_before_the_patch(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as luis", "in #general", "/rollback wa-backend planned")
    not_ready(sandbox, "wa-backend-00002", "Revision is not ready: image pull failed")
    run_lines(sandbox, "as sofia", "click Approve")
    assert patches(sandbox) == [] and serving(sandbox) == UNCHANGED
    operation = last_operation(sandbox)
    assert operation.state == "failed" and failure_code(operation) == "not_ready"
    assert sandbox.emulator.router.calls.list("run.revisions.get")
    card = str(channel_messages(sandbox, "C0GENERAL")[0]["blocks"])
    assert "is not ready in Cloud Run (Revision is not ready: image pull failed)" in card


def test_an_automatic_rollback_skips_a_not_ready_target_and_says_so(sandbox: Sandbox) -> None:
    sandbox.emulator.cloudrun.set_behaviour("wa-backend-00003", error_rate=0.07)
    not_ready(sandbox, "wa-backend-00002")
    run_lines(sandbox, "wait 9m")  # a whole bad window, Monitoring being ~3 min late
    payload = alert_payload(sandbox.emulator, SERVICE, "open", "0.alert-ready")
    assert sandbox.post_alert(payload).status_code == 200
    # a change not yet seen applied is followed at a later tick: wait for it, with a deadline
    wait_until(lambda: serving(sandbox) == {"wa-backend-00001": 100}, "the rollback to 00001")
    sandbox.runtime.engine.wait_idle()
    card = next(m for m in channel_messages(sandbox) if m["text"].startswith("Rollback of"))
    text = json.dumps(card["blocks"], ensure_ascii=False)
    assert "Skipped `wa-backend-00002` (Container failed to start): not ready" in text
    requested = next(
        a for a in sandbox.runtime.deps.store.journal.audit() if a.action == "rollback.requested"
    )
    assert requested.detail["skipped_not_ready"] == ["wa-backend-00002"]


def test_a_failed_health_check_offers_the_previous_and_the_next_revision(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "set wa-backend-00002 healthz=500", "/rollback wa-backend")
    assert serving(sandbox) == {"wa-backend-00002": 100}
    alert = channel_messages(sandbox)[-1]
    blocks = json.dumps(alert["blocks"], ensure_ascii=False)
    assert "health check FAILS" in alert["text"] and "last answers: 500, 500, 500" in blocks
    labels = [
        e["text"]["text"] for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert labels == ["Back to wa-backend-00003", "Try wa-backend-00001"]

    stale_click, _ = sandbox.click_body("Back to wa-backend-00003")
    run_lines(sandbox, "as eve", "click Try wa-backend-00001")  # no role: the matrix refuses
    assert len(patches(sandbox)) == 1 and "tech lead" in ephemerals(sandbox)[-1]
    run_lines(sandbox, "as ana", "click Try wa-backend-00001")
    assert serving(sandbox) == {"wa-backend-00001": 100}
    operation = last_operation(sandbox)
    assert operation.emergency and operation.state == "succeeded"
    assert "health check of `wa-backend-00002` failed" in operation.reason

    sandbox.post(stale_click)  # the other offer, after the next rollback ran
    sandbox.runtime.engine.wait_idle()
    assert "out of date" in ephemerals(sandbox)[-1]
    assert serving(sandbox) == {"wa-backend-00001": 100} and len(patches(sandbox)) == 2


# -- 4. the right words when everything earlier was rolled back from -------------------------------


def test_all_earlier_ready_revisions_rolled_back_from_is_said(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/rollback wa-backend", "/rollback wa-backend wa-backend-00001")
    assert serving(sandbox) == {"wa-backend-00001": 100}
    run_lines(sandbox, "wait 16m", "/rollback wa-backend")
    note = ephemerals(sandbox)[-1]
    assert "was already rolled back from (`wa-backend-00002`)" in note
    assert "no earlier ready revision" not in note and len(patches(sandbox)) == 2
    assert refusals(sandbox)[-1]["why"] == "all_rolled_back"
    assert INCIDENTS


def test_a_refused_request_never_hides_the_rollback_that_ran(sandbox: Sandbox) -> None:
    """Twenty on-call engineers at once: the losers of the race for the service leave their
    request cancelled, newer than the rollback that ran. A later `/rollback` must still see
    that rollback, and ask, rather than go one more revision back by itself (issue 23)."""
    run_lines(sandbox, "as ana", "/rollback wa-backend checkout errors")
    assert serving(sandbox) == {"wa-backend-00002": 100}
    store, now = sandbox.runtime.deps.store, sandbox.runtime.deps.clock.now()
    store.operations.create_operation(  # what a loser of the race used to leave behind
        now,
        kind="rollback",
        service=SERVICE,
        requested_by="U0ANA",
        channel="C0INCIDENTS",
        reason="checkout errors 7",
        emergency=True,
        state="cancelled",
        from_revision="wa-backend-00003",
        to_revision="wa-backend-00002",
        data={},
    )
    run_lines(sandbox, "/rollback wa-backend checkout errors 8")
    assert serving(sandbox) == {"wa-backend-00002": 100} and len(patches(sandbox)) == 1
    assert "already rolled back" in last_ephemeral(sandbox)
