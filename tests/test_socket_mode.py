"""Socket Mode: `python -m bot serve` with SLACK_APP_TOKEN gets its commands and clicks as
envelopes over the Slack emulator's WebSocket, acks each within 3 s, and reconnects when Slack
sends ``disconnect``. No Slack request reaches the bot's HTTP port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bot.sandbox.emulator.server import Emulator
from bot.sandbox.emulator.socket_mode import ACK_DEADLINE_S
from bot.sandbox.slack_payloads import button_click, find_button, slash_command
from tests.helpers import TOKEN, BotProcess, card_text, wait_until

APP_TOKEN = "xapp-1-sandbox"


@pytest.fixture
def world(world: tuple[Emulator, BotProcess]) -> Iterator[tuple[Emulator, BotProcess]]:
    emulator, bot = world  # conftest's, over HTTP: this one adds Socket Mode
    bot.env["SLACK_APP_TOKEN"] = emulator.slack.socket_mode.app_token
    yield emulator, bot


def command(emulator: Emulator, text: str, user: str) -> str:
    """A slash command as Slack puts it in a ``slash_commands`` envelope: the form's fields."""
    url = emulator.slack.new_response_url("C0INCIDENTS", user)
    form = slash_command("/rollback", text, user, user.lower(), "C0INCIDENTS", "incidents", url)
    return emulator.slack.socket_mode.deliver("slash_commands", dict(parse_qsl(form)))


def click(emulator: Emulator, label: str, user: str) -> str:
    """A button click as an ``interactive`` envelope: the interaction payload itself."""
    found = find_button(emulator.slack.messages("C0INCIDENTS"), label)
    assert found is not None, f"no {label!r} button"
    message, button, block_id = found
    url = emulator.slack.new_response_url("C0INCIDENTS", user)
    form = button_click(message, button, block_id, user, user.lower(), "incidents", url)
    payload: dict[str, Any] = json.loads(dict(parse_qsl(form))["payload"])
    return emulator.slack.socket_mode.deliver("interactive", payload)


def acked_in_time(emulator: Emulator, envelope_id: str) -> None:
    envelope = emulator.slack.socket_mode.wait_ack(envelope_id)
    assert envelope.latency_s is not None and envelope.latency_s < ACK_DEADLINE_S
    acks = emulator.router.calls.list("slack.socket_mode.ack")
    assert [a.body["envelope_id"] for a in acks].count(envelope_id) == 1


def finished(emulator: Emulator, bot: BotProcess) -> None:
    try:
        wait_until(lambda: "done" in card_text(emulator), timeout_s=30, what="the rollback")
    except AssertionError:
        raise AssertionError(f"{card_text(emulator)!r}\n{bot.log_tail()}") from None


def no_slack_over_http(emulator: Emulator) -> None:
    """The bot never heard from Slack but over the socket (a response_url post is the bot's)."""
    envelopes = emulator.router.calls.list("slack.socket_mode.envelope")
    assert envelopes and all(e.method == "WS" for e in envelopes)


def test_on_call_rollback_over_socket_mode(world) -> None:
    emulator, bot = world
    bot.start()
    envelope_id = command(emulator, "wa-backend", "U0ANA")
    acked_in_time(emulator, envelope_id)
    finished(emulator, bot)
    assert len(emulator.router.calls.list("run.services.patch")) == 1
    assert emulator.cloudrun.traffic("wa-backend")[0]["revision"] == "wa-backend-00002"
    assert len(emulator.router.calls.list("slack.apps.connections.open")) == 1
    no_slack_over_http(emulator)


def test_scheduled_rollback_approved_by_a_click_over_socket_mode(world) -> None:
    emulator, bot = world
    bot.start()
    acked_in_time(emulator, command(emulator, "wa-backend planned", "U0LUIS"))
    wait_until(lambda: find_button(emulator.slack.messages("C0INCIDENTS"), "Approve"), what="card")
    assert emulator.router.calls.list("run.services.patch") == []
    acked_in_time(emulator, click(emulator, "Approve", "U0SOFIA"))
    finished(emulator, bot)
    assert len(emulator.router.calls.list("run.services.patch")) == 1


def test_reconnects_after_disconnect_and_keeps_working(world) -> None:
    emulator, bot = world
    bot.start()
    socket_mode = emulator.slack.socket_mode
    socket_mode.wait_connections(1)
    assert socket_mode.disconnect("refresh_requested") == 1
    socket_mode.wait_connections(2)
    assert len(emulator.router.calls.list("slack.apps.connections.open")) == 2
    # slack_sdk's client takes envelopes on the new connection once it has closed the old one
    wait_until(lambda: socket_mode.open_connections() == 1, what="the old connection to close")
    acked_in_time(emulator, command(emulator, "wa-backend", "U0ANA"))
    finished(emulator, bot)
    assert len(emulator.router.calls.list("run.services.patch")) == 1


# -- the emulator itself, with slack_sdk's WebClient and a plain WebSocket client ---------------


def test_apps_connections_open_takes_the_app_token_only(emulator: Emulator) -> None:
    client = WebClient(token=TOKEN, base_url=f"{emulator.url}/api/")
    with pytest.raises(SlackApiError) as bot_token:
        client.apps_connections_open(app_token="xoxb-sandbox")
    assert bot_token.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as wrong:
        client.apps_connections_open(app_token="xapp-1-wrong")
    assert wrong.value.response["error"] == "invalid_auth"
    url = client.apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith("ws://") and "/link/?ticket=" in url


def test_socket_hello_envelope_ack_and_one_use_tickets(emulator: Emulator) -> None:
    client = WebClient(base_url=f"{emulator.url}/api/")
    url = client.apps_connections_open(app_token=APP_TOKEN)["url"]
    with connect(url) as socket:
        hello = json.loads(socket.recv(timeout=10))
        assert hello["type"] == "hello" and hello["connection_info"]["app_id"]
        envelope_id = emulator.slack.socket_mode.deliver("events_api", {"type": "event_callback"})
        envelope = json.loads(socket.recv(timeout=10))
        assert envelope["envelope_id"] == envelope_id
        assert envelope["accepts_response_payload"] is False
        socket.send(json.dumps({"envelope_id": envelope_id, "payload": {"text": "ok"}}))
        assert emulator.slack.socket_mode.wait_ack(envelope_id).response == {"text": "ok"}
        emulator.slack.socket_mode.disconnect("warning")
        assert json.loads(socket.recv(timeout=10)) == {
            "type": "disconnect",
            "reason": "warning",
            "debug_info": {"host": "applink"},
        }
    with pytest.raises(InvalidStatus) as used:
        connect(url)
    assert used.value.response.status_code == 401
    with pytest.raises(ValueError):
        emulator.slack.socket_mode.deliver("slash_command", {})


def test_http_endpoints_still_served_in_socket_mode(world) -> None:
    emulator, bot = world
    bot.start()  # waits on /healthz
    assert requests.get(f"http://127.0.0.1:{bot.port}/healthz", timeout=5).ok
    emulator.slack.socket_mode.wait_connections(1)
