"""Rollback readiness in Slack: the procedure's "I've read it" button, and a tech lead's
override of a production release blocked by the checklist."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.ops import procedure, release
from bot.ops.cards import announce, operation_card, tell_requester_if_unseen
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ports import Message
from bot.slack.answers import ephemeral, tell_later
from bot.slack.buttons import click_of

log = logging.getLogger("runback.slack")


def blocked_message(deps: Deps, blocked: release.ReadinessBlocked) -> Message:
    request = blocked.request
    value = {"blocked": blocked.blocked_id}  # the stored request; the clicker is the overrider
    return deps.renderer.message(
        "release_blocked",
        service=request.service,
        image=request.image,
        requester=request.user,
        value=value,
        **blocked.checklist,
    )


def post_blocked(deps: Deps, blocked: release.ReadinessBlocked) -> Message:
    """The checklist goes to the channel, where a tech lead can override it; the requester is
    told why nothing started."""
    announce(deps, blocked.request.channel, blocked_message(deps, blocked))
    return ephemeral(deps, "readiness.override.blocked_notice", service=blocked.request.service)


def register(app: App, deps: Deps, engine: Engine) -> None:
    @app.action("procedure_ack")
    @engine.tracked
    def acknowledge(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        click = click_of(body, action)

        tell_later(
            engine,
            deps,
            click.channel,
            click.user,
            lambda: procedure.acknowledge(deps, click.user, click.value, click.channel),
        )

    @app.action("release_readiness_override")
    @engine.tracked
    def override(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        click = click_of(body, action)
        try:
            blocked_id = json.loads(click.value)["blocked"]
            if not isinstance(blocked_id, int) or isinstance(blocked_id, bool):
                raise TypeError(blocked_id)
        except (ValueError, KeyError, TypeError):
            blocked_id = -1  # names no stored request: refused (audited) like any unknown one

        def run() -> None:
            try:
                operation = release.override(deps, blocked_id, click.user)
            except release.ReadinessBlocked:  # the checklist changed: the matrix said no
                return
            engine.submit(operation.id)
            tell_requester_if_unseen(deps, operation_card(operation.id), body["response_url"])
            # the blocked message cannot start a second release: it now says who overrode it
            done = deps.renderer.message(
                "ephemeral", key="readiness.override.done", user=click.user, id=operation.id
            )
            respond(text=done.text, blocks=done.blocks, replace_original=True)

        tell_later(engine, deps, click.channel, click.user, run)
