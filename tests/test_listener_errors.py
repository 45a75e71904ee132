"""What a Slack listener raises before it answered reaches its sender as words (one Bolt
``app.error`` handler, bot/slack/errors.py), never as Bolt's bare HTTP 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from slack_bolt import BoltResponse

from bot.ops.errors import UserError
from bot.sandbox.console import Sandbox
from bot.sandbox.slack_payloads import button_click
from bot.slack.errors import listener_error_answer
from tests.helpers import wait_until


def click_action(box: Sandbox, action_id: str) -> tuple[int, str]:
    """Click a button with ``action_id`` as the console's user; (HTTP status, the user's id)."""
    user, channel = box.users[box.user], box.channels[box.channel]
    url = box.emulator.slack.new_response_url(channel, user)
    message = {"ts": "1700000000.000100", "channel": channel}
    button = {"action_id": action_id, "text": {"type": "plain_text", "text": "Go"}, "value": "x"}
    body = button_click(message, button, "b1", user, box.user, box.channel, url)
    return box.post(body).status_code, user


def private_texts(box: Sandbox, user: str) -> list[str]:
    return [m["text"] for m in box.emulator.slack.messages() if m.get("ephemeral_to") == user]


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (RuntimeError("boom: not for the user's eyes"), "Something went wrong on my side"),
        (UserError("notice.unknown_request"), "This button belongs to a request I don't know"),
    ],
)
def test_a_click_whose_listener_fails_before_its_ack_is_told_privately(
    sandbox: Sandbox, raised: Exception, expected: str
) -> None:
    def fails(body: dict[str, Any]) -> None:
        raise raised

    sandbox.runtime.bolt_app.action("test_listener_fails")(fails)
    status, user = click_action(sandbox, "test_listener_fails")
    assert status == 200, "Bolt's bare 500 shows the clicker 'dispatch_failed'"
    wait_until(lambda: any(expected in t for t in private_texts(sandbox, user)), "told", 30)
    assert not any("not for the user's eyes" in t for t in private_texts(sandbox, user))


def test_a_command_whose_listener_fails_after_its_ack_gets_the_error_in_its_answer(
    sandbox: Sandbox,
) -> None:
    """Bolt answers once the listener returns (bot/slack/app.py), so what it raises after
    ``ack()`` still reaches the sender in the answer, never as Bolt's bare 500."""

    def fails(ack: Any) -> None:
        ack()
        raise RuntimeError("boom: not for the user's eyes")

    app = sandbox.runtime.bolt_app
    app.command("/test-fails")(fails)
    app._listeners.insert(0, app._listeners.pop())  # ahead of the catch-all for unknown commands
    answer = sandbox.post(sandbox.slash_body("/test-fails now"))
    assert answer.status_code == 200
    said = answer.json()
    assert said["response_type"] == "ephemeral"
    assert "Something went wrong on my side" in said["text"]
    assert "not for the user's eyes" not in answer.text


class Responses:
    """A response_url that records what it was given."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


def test_a_command_not_yet_acked_gets_the_error_in_its_answer(sandbox: Sandbox) -> None:
    deps, responses = sandbox.runtime.deps, Responses()
    unanswered = BoltResponse(status=500)
    answer = listener_error_answer(
        deps, UserError("error.usage.traffic"), {"command": "/traffic"}, responses, unanswered
    )  # type: ignore[arg-type]
    assert answer is not None and answer.status == 200
    said = json.loads(answer.body)
    assert said["response_type"] == "ephemeral"
    assert "Usage: `/traffic SERVICE`" in said["text"] and responses.sent == []


def test_an_error_after_the_ack_goes_to_the_response_url(sandbox: Sandbox) -> None:
    responses = Responses()
    answer = listener_error_answer(
        sandbox.runtime.deps, RuntimeError("late"), {"command": "/traffic"}, responses, None
    )  # type: ignore[arg-type]
    assert answer is None
    assert len(responses.sent) == 1 and responses.sent[0]["response_type"] == "ephemeral"
    assert "reference" in responses.sent[0]["text"]


def test_a_form_keeps_bolts_error_so_slack_keeps_what_was_typed(sandbox: Sandbox) -> None:
    responses = Responses()
    body = {"type": "view_submission", "view": {"id": "V1"}}
    answer = listener_error_answer(
        sandbox.runtime.deps, RuntimeError("x"), body, responses, BoltResponse(status=500)
    )  # type: ignore[arg-type]
    assert answer is None and responses.sent == []
