"""Talking to Slack truthfully: cards survive Slack outages, rate limits and lost answers without
slowing a traffic change, the bot says where it cannot post, and free workspaces (no user groups)
never silently drop a role. The real Bolt app and slack_sdk against the Slack emulator."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pytest

from bot.ops import cards
from bot.ports import Message
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from bot.sandbox.seed import UNINVITED_CHANNEL
from bot.store import Operation, OutboxMessage
from tests.conftest import sandbox_config
from tests.helpers import run_lines, serving, wait_until

INCIDENTS = "C0INCIDENTS"
T = TypeVar("T")


def until(check: Callable[[], T], box: Sandbox, advance_s: float = 0.0, timeout_s: float = 30) -> T:
    """Wait for ``check`` to hold, letting ``advance_s`` of sandbox time pass between looks
    (a backoff measured in sandbox time then comes due without a real wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if advance_s:
            box.clock.advance(advance_s)
            box.runtime.engine.tick()
        box.runtime.engine.wait_idle(timeout_s=5, settle_s=0.01)
        time.sleep(0.02)
    raise AssertionError("the expected state was not reached in time")


def bot_messages(box: Sandbox, channel: str = INCIDENTS) -> list[dict[str, Any]]:
    return [
        m
        for m in box.emulator.slack.messages(channel)
        if not m.get("ephemeral_to") and m["user"] == "U0RUNBACK"
    ]


def cards_of(box: Sandbox, operation: Operation) -> list[dict[str, Any]]:
    key = cards.operation_card(operation.id)
    return [
        m
        for m in bot_messages(box, operation.channel)
        if (m.get("metadata") or {}).get("event_payload", {}).get("card") == key
    ]


def last_operation(box: Sandbox) -> Operation:
    from sqlalchemy import select

    with box.runtime.deps.store.session() as session:
        found = session.scalars(select(Operation).order_by(Operation.created_at.desc())).first()
    assert found is not None
    return found


def calls(box: Sandbox, api: str) -> list[Any]:
    return box.emulator.router.calls.list(api)


# -- issue 8: Slack outages do not falsify the record ------------------------------------------


def test_a_rate_limited_card_never_slows_the_traffic_change(sandbox: Sandbox) -> None:
    sandbox.emulator.router.faults.add(
        Fault("slack.chat.update", 429, message="30", times=None)  # Retry-After: 30
    )
    started = time.monotonic()
    run_lines(sandbox, "as ana", "/rollback wa-backend checkout errors")

    operation = last_operation(sandbox)
    assert operation.state == "succeeded"
    assert serving(sandbox) == {"wa-backend-00002": 100}
    assert time.monotonic() - started < 10, "the rollback waited for Slack's Retry-After"
    assert len(calls(sandbox, "slack.chat.update")) == 1, "Retry-After was not honoured"
    [card] = cards_of(sandbox, operation)
    assert "done" not in card["text"], "the card cannot be up to date while Slack says 429"

    sandbox.emulator.router.faults.clear()  # Slack answers again after its Retry-After
    until(lambda: "done" in cards_of(sandbox, operation)[0]["text"], sandbox, advance_s=10)
    assert len(cards_of(sandbox, operation)) == 1, "one operation, one card"
    assert len(calls(sandbox, "slack.chat.postMessage")) == 1


def test_a_failure_during_a_slack_outage_is_announced_when_slack_is_back(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    faults = sandbox.emulator.router.faults
    faults.add(Fault("run.services.patch", 503, times=None))
    for api in ("slack.chat.postMessage", "slack.chat.update"):
        faults.add(Fault(api, 503, times=None))
    with caplog.at_level(logging.WARNING, logger="runback.cards"):
        run_lines(sandbox, "as ana", "/rollback wa-backend")

    operation = last_operation(sandbox)
    assert operation.state == "failed", "a Slack outage must not stop or fail the workflow"
    assert bot_messages(sandbox) == []
    assert sandbox.runtime.deps.store.operations.lock_holder("wa-backend") is None

    faults.clear()
    until(lambda: len(bot_messages(sandbox)) == 2, sandbox, advance_s=15)
    card, alert = bot_messages(sandbox)
    assert card["metadata"]["event_payload"]["card"] == cards.operation_card(operation.id)
    assert "failed" in card["text"] and "FAILED" in alert["text"]
    assert "`wa-backend-00003` 100%" in str(alert["blocks"]), "the alert tells the real traffic"
    failures = [r for r in caplog.records if r.name == "runback.cards"]
    assert failures and all(r.exc_info is None for r in failures), "one line, not a traceback"
    assert all("fatal_error" in r.getMessage() for r in failures if "attempt" in r.getMessage())


def test_a_post_whose_answer_was_lost_does_not_make_a_second_card(sandbox: Sandbox) -> None:
    # Slack posts the card, but its answer comes after the client gave up waiting.
    sandbox.runtime.deps.chat.cards.timeout = 0.3  # type: ignore[attr-defined]
    sandbox.emulator.router.faults.add(Fault("slack.chat.postMessage", None, delay_ms=700))
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    operation = last_operation(sandbox)

    until(lambda: cards_of(sandbox, operation), sandbox)  # the late post lands
    assert len(calls(sandbox, "slack.chat.postMessage")) == 1, "it waits before looking"
    until(lambda: "done" in cards_of(sandbox, operation)[0]["text"], sandbox, advance_s=5)

    assert len(cards_of(sandbox, operation)) == 1, "one operation, one card"
    assert len(calls(sandbox, "slack.chat.postMessage")) == 1, "the lost post was found again"
    assert calls(sandbox, "slack.conversations.history"), "nobody looked for the lost post"


def slack_waits(claim_s: float, lost_answer_wait_s: float) -> Sandbox:
    """The sandbox with app.yaml's ``slack:`` waits set."""
    config = sandbox_config()
    slack = config.slack.model_copy(
        update={"claim_s": claim_s, "lost_answer_wait_s": lost_answer_wait_s}
    )
    return Sandbox(config.model_copy(update={"slack": slack}), retry_deadline_s=1.5)


def uncertain_row(box: Sandbox) -> OutboxMessage | None:
    """The card whose post was sent and not answered yet (or whose answer was lost)."""
    from sqlalchemy import select

    with box.runtime.deps.store.session() as session:
        query = select(OutboxMessage).where(OutboxMessage.uncertain_since != "")
        return session.scalars(query).first()


def test_a_delivery_is_claimed_for_slack_claim_s() -> None:
    box = slack_waits(claim_s=45, lost_answer_wait_s=15)
    try:
        box.emulator.router.faults.add(Fault("slack.chat.postMessage", None, delay_ms=1500))
        run_lines(box, "as ana")
        box.post(box.slash_body("/rollback wa-backend"))  # acked; the card's post is in flight
        row = wait_until(lambda: uncertain_row(box), "the card's post to be sent")
        assert row.claimed_until is not None, "a post in flight is claimed"
        sent = datetime.fromisoformat(row.uncertain_since)
        claimed_s = (row.claimed_until - sent).total_seconds()
        assert 40 < claimed_s <= 45, f"claimed for {claimed_s} s, not slack.claim_s"
    finally:
        box.close()


def test_a_lost_answer_is_looked_for_after_slack_lost_answer_wait_s() -> None:
    box = slack_waits(claim_s=20, lost_answer_wait_s=40)
    try:
        box.runtime.deps.chat.cards.timeout = 0.3  # type: ignore[attr-defined]
        box.emulator.router.faults.add(Fault("slack.chat.postMessage", None, delay_ms=700))
        run_lines(box, "as ana", "/rollback wa-backend")
        row = wait_until(
            lambda: (found := uncertain_row(box)) is not None and found.attempts and found,
            "the post's lost answer to be recorded",
        )
        waited_s = (row.due_at - datetime.fromisoformat(row.uncertain_since)).total_seconds()
        assert waited_s == 40, f"looked for again after {waited_s} s, not slack.lost_answer_wait_s"
    finally:
        box.close()


def test_a_card_that_cannot_be_updated_goes_out_as_a_new_message(sandbox: Sandbox) -> None:
    sandbox.emulator.router.faults.add(Fault("slack.chat.update", 503, times=None))
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    operation = last_operation(sandbox)
    assert operation.state == "succeeded"

    until(lambda: len(cards_of(sandbox, operation)) == 2, sandbox, advance_s=5)
    stale, final = cards_of(sandbox, operation)
    assert "done" in final["text"], "the channel must get the final state"
    assert "done" not in stale["text"]
    assert len(calls(sandbox, "slack.chat.update")) == cards.UPDATES_BEFORE_NEW_MESSAGE
    assert last_operation(sandbox).message_ts == final["ts"], "threads follow the new card"

    sandbox.emulator.router.faults.clear()  # chat.update works again: the old card is corrected
    until(lambda: "done" in cards_of(sandbox, operation)[0]["text"], sandbox, advance_s=15)
    assert len(cards_of(sandbox, operation)) == 2


def test_text_too_long_for_slack_is_clipped_not_lost(sandbox: Sandbox) -> None:
    deps = sandbox.runtime.deps
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "huge"}}]
    cards.show(deps, "test:huge", INCIDENTS, Message("x" * 50_000, blocks))
    [message] = until(lambda: bot_messages(sandbox), sandbox)
    assert 0 < len(message["text"]) <= 40_000
    assert message["blocks"] == blocks


def test_cards_are_updated_by_channel_id_even_when_posted_by_name(sandbox: Sandbox) -> None:
    deps = sandbox.runtime.deps
    section = [{"type": "section", "text": {"type": "mrkdwn", "text": "v1"}}]
    cards.show(deps, "test:named", "#incidents", Message("v1", section))
    until(lambda: bot_messages(sandbox), sandbox)
    cards.show(deps, "test:named", "#incidents", Message("v2", section))
    until(lambda: bot_messages(sandbox)[0]["text"] == "v2", sandbox)
    [update] = calls(sandbox, "slack.chat.update")
    assert update.body["channel"] == INCIDENTS


# -- issue 9: channel membership ---------------------------------------------------------------


def test_a_request_in_a_channel_without_the_bot_is_told_at_once(sandbox: Sandbox) -> None:
    sandbox.channels["random"] = UNINVITED_CHANNEL
    run_lines(sandbox, "as luis", "in random", "/rollback wa-backend")
    operation = last_operation(sandbox)
    assert operation.state == "awaiting_approval"

    notes = [
        m
        for m in sandbox.emulator.slack.messages(UNINVITED_CHANNEL)
        if m.get("ephemeral_to") == "U0LUIS"
    ]
    assert len(notes) == 1, "the requester must be told once, at once"
    assert f"<#{UNINVITED_CHANNEL}>" in notes[0]["text"]
    assert "/invite @Runback" in notes[0]["text"]
    assert notes[0]["source"] == "response_url"
    assert bot_messages(sandbox, UNINVITED_CHANNEL) == []

    sandbox.emulator.slack.invite(UNINVITED_CHANNEL)  # /invite @Runback
    [card] = until(lambda: cards_of(sandbox, operation), sandbox, advance_s=15)
    assert "Approve" in str(card["blocks"]), "the card comes with its buttons once invited"


# -- issue 9: user groups on free plans -----------------------------------------------------------


@pytest.mark.parametrize("answer", ["paid_teams_only", "plan_upgrade_required"])
def test_on_a_free_plan_roles_come_from_app_yaml_and_runback_says_so(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    slack = sandbox.emulator.slack
    slack.add_usergroup("S0ONCALL", "oncall", ["U0ANA", "U0EVE"])  # eve: only via the group
    slack.set_plan("free", answer)  # Slack answers either on a plan without user groups

    with caplog.at_level(logging.ERROR):
        assert sandbox.runtime.check_user_groups() == "paid_teams_only"
    assert any(
        "paid_teams_only" in r.getMessage() and "@oncall" in r.getMessage() for r in caplog.records
    )

    whoami = "\n".join(run_lines(sandbox, "as ana", "/ops whoami"))
    assert "cannot be read" in whoami and "paid Slack plan" in whoami and "@oncall" in whoami

    refused = "\n".join(run_lines(sandbox, "as eve", "/rollback wa-backend"))
    assert "cannot tell whether you hold it" in refused and "@oncall" in refused
    assert "you don't have it" not in refused
    assert serving(sandbox) == {"wa-backend-00003": 100}

    run_lines(sandbox, "as ana", "/rollback wa-backend")  # on-call by her id in app.yaml
    assert serving(sandbox) == {"wa-backend-00002": 100}


def test_on_a_free_plan_an_approval_refusal_says_groups_cannot_be_read(sandbox: Sandbox) -> None:
    sandbox.emulator.slack.set_plan("free")
    run_lines(sandbox, "as luis", "in #general", "/rollback wa-backend")  # waits for a tech lead
    refused = "\n".join(run_lines(sandbox, "as eve", "click Approve"))
    assert "cannot tell whether you hold that role" in refused and "@oncall" in refused
    assert serving(sandbox) == {"wa-backend-00003": 100}


def test_a_rate_limited_user_group_lookup_never_delays_an_emergency_rollback(
    sandbox: Sandbox,
) -> None:
    sandbox.emulator.router.faults.add(
        Fault("slack.usergroups.list", 429, message="30", times=None)
    )
    started = time.monotonic()
    run_lines(sandbox, "as ana", "/rollback wa-backend")

    assert serving(sandbox) == {"wa-backend-00002": 100}
    assert time.monotonic() - started < 10, "the roles lookup slept on Retry-After"
    assert len(calls(sandbox, "slack.usergroups.list")) == 1


def test_the_owed_final_state_survives_a_restart(sandbox: Sandbox) -> None:
    faults = sandbox.emulator.router.faults
    for api in ("slack.chat.postMessage", "slack.chat.update"):
        faults.add(Fault(api, 503, times=None))
    run_lines(sandbox, "as ana", "/rollback wa-backend")
    operation = last_operation(sandbox)
    assert operation.state == "succeeded" and bot_messages(sandbox) == []

    sandbox.restart_bot()  # what the channel is owed is in the database, not in memory
    faults.clear()

    [card] = until(lambda: cards_of(sandbox, operation), sandbox, advance_s=15)
    assert "done" in card["text"]
    assert len(bot_messages(sandbox)) == 1


def test_start_up_says_when_the_bot_is_not_in_the_incidents_channel(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert sandbox.runtime.check_incidents_channel() is True
    sandbox.emulator.slack.kick(INCIDENTS)
    with caplog.at_level(logging.ERROR, logger="runback.runtime"):
        assert sandbox.runtime.check_incidents_channel() is False
    assert any("/invite @Runback" in r.getMessage() for r in caplog.records)


def test_the_postmortem_of_an_incident_during_a_slack_outage_is_posted_when_slack_is_back(
    sandbox: Sandbox,
) -> None:
    import json

    from bot.sandbox.seed import alert_payload

    faults = sandbox.emulator.router.faults
    for api in ("slack.chat.postMessage", "slack.chat.update", "slack.files.getUploadURLExternal"):
        faults.add(Fault(api, 503, times=None))
    sandbox.emulator.cloudrun.set_behaviour("wa-backend-00003", error_rate=0.07)
    sandbox.run_line("wait 9m")  # a whole bad window, Monitoring ~3 min late
    answer = sandbox.post_alert(alert_payload(sandbox.emulator, "wa-backend", "open", "0.a-1"))
    assert answer.status_code == 200
    sandbox.runtime.engine.wait_idle()
    assert serving(sandbox) == {"wa-backend-00002": 100}, "Slack down must not stop the rollback"
    assert sandbox.emulator.slack.files() == []

    faults.clear()
    [postmortem] = until(lambda: sandbox.emulator.slack.files(), sandbox, advance_s=15)
    assert postmortem["name"].startswith("postmortem-wa-backend-")
    record = sandbox.runtime.deps.store.incidents.incident(json.loads(answer.text)["incident"])
    [shared] = [m for m in sandbox.emulator.slack.messages(INCIDENTS) if m["files"]]
    assert shared["thread_ts"] == record.message_ts, "the draft goes in the incident's thread"


def test_concurrent_couriers_post_a_card_once(sandbox: Sandbox) -> None:
    """Several bot instances share one database: each card version goes to Slack once."""
    import threading

    deps = sandbox.runtime.deps
    sandbox.emulator.router.faults.add(Fault("slack.chat.postMessage", None, delay_ms=300))
    section = [{"type": "section", "text": {"type": "mrkdwn", "text": "card"}}]
    deps.store.outbox.stage_card(
        "test:shared", INCIDENTS, {"text": "card", "blocks": section}, deps.clock.now()
    )
    couriers = [threading.Thread(target=cards.deliver_due, args=(deps,)) for _ in range(6)]
    for courier in couriers:
        courier.start()
    for courier in couriers:
        courier.join(timeout=30)

    until(lambda: bot_messages(sandbox), sandbox)
    assert len(calls(sandbox, "slack.chat.postMessage")) == 1
    assert len(bot_messages(sandbox)) == 1
