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
) -> str:
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
            "trigger_id": secrets.token_hex(8),
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
