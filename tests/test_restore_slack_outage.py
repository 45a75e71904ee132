"""A restore under a Slack outage (issue 21: "Slack answering 500/429 throughout fails the
restore", never reproduced): the restore's steps do not wait on Slack. Its cards go through the
outbox, which retries; so the clone is made, the backup restored, traffic shifted and judged
while every card and note is refused, and the card catches up once Slack answers again."""

from __future__ import annotations

from bot.ops.restore.states import RestoreData
from bot.sandbox.console import Sandbox
from tests.helpers import run, serving, wait_until
from tests.test_database_flows import ask_and_approve, box, calls, card, latest

__all__ = ["box"]  # the fixture, from the restore flows

OUTAGE = (
    "fault slack.chat.update 500 1000",
    "fault slack.chat.postMessage 429 1000",
    "fault slack.chat.postEphemeral 500 1000",
    "fault slack.response_url 500 1000",
)


def test_a_restore_goes_on_while_slack_refuses_every_card(box: Sandbox) -> None:
    ask_and_approve(box)
    assert latest(box, "restore").state == "creating"
    refused_before = calls(box, "slack.chat.update")
    run(box, *OUTAGE)

    run(box, "wait 6m", "wait 11m")
    restore = latest(box, "restore")
    assert restore.state == "judging", RestoreData.of(restore).outcome
    assert serving(box) == {restore.to_revision: 100}
    run(box, "wait 10m")
    restore = latest(box, "restore")
    assert restore.state == "succeeded" and RestoreData.of(restore).verified is True
    assert calls(box, "slack.chat.update") > refused_before, "Slack was asked, and refused"
    assert "runs on" not in card(box, "restore"), "no card got through the outage"

    run(box, "fault clear", "wait 1m")
    wait_until(
        lambda: f"runs on `{RestoreData.of(restore).clone}`" in card(box, "restore"),
        "the card catching up once Slack answers",
        60,
        lambda: card(box, "restore"),
    )
