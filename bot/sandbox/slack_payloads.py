"""What Slack sends a bot: signed slash commands and button clicks (for the console and tests)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

TEAM_ID = "T0SANDBOX"
APP_ID = "A0RUNBACK"
FORM = "application/x-www-form-urlencoded"


def signed_headers(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature: HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{stamp}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def slash_command(
    command: str,
    text: str,
    user_id: str,
    user_name: str,
    channel_id: str,
    channel_name: str,
    response_url: str,
    trigger_id: str | None = None,
) -> str:
    """``trigger_id``: one the Slack emulator issued, when the bot may open a modal with it."""
    return urlencode(
        {
            "token": "sandbox",
            "team_id": TEAM_ID,
            "team_domain": "runback-sandbox",
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "trigger_id": trigger_id or secrets.token_hex(8),
            "response_url": response_url,
        }
    )


def button_click(
    message: dict[str, Any],
    button: dict[str, Any],
    block_id: str,
    user_id: str,
    user_name: str,
    channel_name: str,
    response_url: str,
) -> str:
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "api_app_id": APP_ID,
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": TEAM_ID},
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": message["channel"],
        },
        "channel": {"id": message["channel"], "name": channel_name},
        "message": {
            "ts": message["ts"],
            "text": message.get("text", ""),
            "blocks": message.get("blocks") or [],
        },
        "trigger_id": secrets.token_hex(8),
        "token": "sandbox",
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": button["action_id"],
                "block_id": block_id,
                "text": button["text"],
                "value": button.get("value", ""),
                "action_ts": str(time.time()),
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def find_button(
    messages: list[dict[str, Any]], label: str
) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """The newest message with a button labelled ``label``: (message, button, block_id)."""
    for message in reversed(messages):
        for block in message.get("blocks") or []:
            if block.get("type") != "actions":
                continue
            for element in block.get("elements", []):
                text = element.get("text", {}).get("text", "")
                if element.get("type") == "button" and text.lower() == label.lower():
                    return message, element, block.get("block_id", "")
    return None


def view_submission(
    view: dict[str, Any], values: dict[str, Any], user_id: str, user_name: str, trigger_id: str
) -> str:
    """Slack's ``view_submission`` interaction: the open ``view`` (as views.open answered it,
    with its private_metadata) and what the user typed, as ``state.values``."""
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "runback-sandbox"},
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "sandbox",
        "trigger_id": trigger_id,
        "view": {**view, "state": {"values": values}},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return urlencode({"payload": json.dumps(payload)})


def input_values(view: dict[str, Any], typed: dict[str, str]) -> dict[str, Any]:
    """``state.values`` of ``view`` with ``typed`` (action_id -> text or option value) filled
    in; other inputs keep their initial value, as Slack sends them."""
    values: dict[str, Any] = {}
    for block in view.get("blocks") or []:
        element = block.get("element") or {}
        action_id = element.get("action_id")
        if block.get("type") != "input" or not action_id:
            continue
        kind = element.get("type")
        if kind == "plain_text_input":
            value = typed.get(action_id, element.get("initial_value"))
            state: dict[str, Any] = {"type": kind, "value": value}
        else:
            chosen = typed.get(action_id)
            options = element.get("options") or []
            option = next((o for o in options if o.get("value") == chosen), None)
            state = {"type": kind, "selected_option": option or element.get("initial_option")}
        values[block.get("block_id", action_id)] = {action_id: state}
    return values
