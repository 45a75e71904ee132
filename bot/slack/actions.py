"""Buttons. The clicker's identity comes from the signed payload, never from a button value."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt import Ack, App

from bot.ops import incidents
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.ops.preemption import request_rollback
from bot.ops.rollback import (
    RollbackRequest,
    authorize_request,
    check_recovery_offer,
    check_repeat_still_current,
    decide,
)
from bot.slack.answers import tell_later
from bot.slack.buttons import button

log = logging.getLogger("runback.slack")

REASON_IN_BUTTON = 800  # a button's value holds at most 2,000 characters (Block Kit)


def repeat_button_value(question: dict[str, Any]) -> str:
    """What the confirm button of a repeated `/rollback` carries: who was asked, about what."""
    return json.dumps(
        {
            "service": question["service"],
            "revision": question["target"]["revision"],
            "after": question["previous"]["id"],
            "user": question["user"],
            "reason": question["reason"][:REASON_IN_BUTTON],
        },
        ensure_ascii=False,
    )


def _decoded(value: str, *keys: str) -> dict[str, str]:
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict) or not all(isinstance(decoded.get(k), str) for k in keys):
        raise UserError("notice.unknown_request")
    return decoded


def register(app: App, deps: Deps, engine: Engine) -> None:
    def on_decision(approve: bool, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        approval_id = str(action.get("value", ""))

        def work() -> None:
            operation = decide(deps, approval_id, user, approve)
            if operation.state == "approved":
                engine.submit(operation.id)
            elif operation.state == "rejected":  # an incident waiting for it says so now
                incidents.on_operation_finished(deps, operation)

        tell_later(engine, deps, channel, user, work)

    @app.action("rollback_approve")
    @engine.tracked
    def approve(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        on_decision(True, ack, body, action)

    @app.action("rollback_reject")
    @engine.tracked
    def reject(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        on_decision(False, ack, body, action)

    def confirm_repeat(value: str, user: str, channel: str) -> Any:
        """The same user, still authorized, and still the same target: re-checked now."""
        asked = _decoded(value, "service", "revision", "after", "user", "reason")
        if asked["user"] != user:
            raise UserError("notice.repeat_not_yours", user=asked["user"])
        request = RollbackRequest(
            service=asked["service"],
            revision=asked["revision"],
            reason=asked["reason"],
            user=user,
            channel=channel,
        )
        authorize_request(deps, request)
        check_repeat_still_current(deps, asked["service"], asked["revision"], asked["after"], user)
        return request_rollback(deps, request)

    def recover(value: str, user: str, channel: str) -> Any:
        """A failed rollback's "back to ..." button: a rollback to exactly that revision, by
        the approval matrix for the clicker, unless something happened on the service since."""
        offer = _decoded(value, "operation", "revision")
        failed = check_recovery_offer(deps, offer["operation"], offer["revision"], user)
        reason = deps.renderer.text("recovery.reason", id=failed.id, revision=failed.to_revision)
        request = RollbackRequest(
            service=failed.service,
            revision=offer["revision"],
            reason=reason,
            user=user,
            channel=failed.channel,
        )
        return request_rollback(deps, request)

    app.action("rollback_repeat_confirm")(
        button(deps, engine, lambda c: confirm_repeat(c.value, c.user, c.channel))
    )
    app.action(re.compile(r"^rollback_recover_[0-9]+$"))(
        button(deps, engine, lambda c: recover(c.value, c.user, c.channel))
    )
