"""One handler for what a listener raises before it answered (Bolt's ``app.error``): a
UserError becomes its message and anything else a reference to the logs, only for the person
who sent it, never Bolt's bare HTTP 500 (Slack would show "dispatch_failed"). Work after the
ack meets the same words through ``answers.outcome``.

Runback's listeners run before Bolt answers (``process_before_response``, bot/slack/app.py), so
Bolt passes the answer being built as ``response`` even after ``ack()``, and a BoltResponse
returned here replaces it (slack_bolt/listener/listener_error_handler.py,
``CustomListenerErrorHandler``). Bolt passes None only in its other mode once ``ack()`` was
called: then the words go through the response_url.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from slack_bolt import App, BoltResponse, Respond

from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ports import Message
from bot.slack.answers import internal_error_message, respond_privately, user_error_message

JSON: dict[str, str | Sequence[str]] = {"content-type": "application/json;charset=utf-8"}


def register_error_handler(app: App, deps: Deps) -> None:
    @app.error
    def on_listener_error(
        error: Exception, body: dict[str, Any], respond: Respond, response: BoltResponse | None
    ) -> BoltResponse | None:
        return listener_error_answer(deps, error, body, respond, response)


def listener_error_answer(
    deps: Deps,
    error: Exception,
    body: dict[str, Any],
    respond: Respond,
    response: BoltResponse | None,
) -> BoltResponse | None:
    """How a listener's ``error`` reaches its sender: in the answer to a slash command not yet
    acknowledged, else privately through the response_url. A form (view_submission) keeps
    Bolt's error so that Slack keeps the modal and what was typed in it."""
    if isinstance(error, UserError):
        message = user_error_message(deps, error)
    else:
        message = internal_error_message(deps, error)
    if response is not None and "command" in body:
        return BoltResponse(status=200, body=json.dumps(_ephemeral_body(message)), headers=JSON)
    if body.get("type") == "view_submission":
        return None
    respond_privately(respond, message)
    return BoltResponse(status=200, body="") if response is not None else None


def _ephemeral_body(message: Message) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": message.text, "blocks": message.blocks}
