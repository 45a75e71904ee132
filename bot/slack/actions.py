"""Buttons. The clicker's identity comes from the signed payload, never from a button value."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.ops.rollback import decide

log = logging.getLogger("runback.slack")


def register(app: App, deps: Deps, engine: Engine) -> None:
    def on_decision(approve: bool, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        approval_id = str(action.get("value", ""))

        def work() -> None:
            try:
                operation = decide(deps, approval_id, user, approve)
            except UserError as error:
                message = deps.renderer.message("ephemeral", key=error.key, **error.context)
                deps.chat.ephemeral(channel, user, message)
                return
            if operation.state == "approved":
                engine.submit(operation.id)

        engine.background(work)

    @app.action("rollback_approve")
    @engine.tracked
    def approve(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        on_decision(True, ack, body, action)

    @app.action("rollback_reject")
    @engine.tracked
    def reject(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        on_decision(False, ack, body, action)
