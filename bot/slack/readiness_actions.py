"""Rollback readiness in Slack: the procedure's "I've read it" button, and a tech lead's
override of a production release blocked by the checklist."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.ops import procedure, release
from bot.ops.cards import announce, operation_card, tell_requester_if_unseen
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.ports import Message
from bot.slack.answers import ephemeral
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

        def run() -> None:
            try:
                note = procedure.acknowledge(deps, click.user, click.value, click.channel)
            except UserError as error:
                note = ephemeral(deps, error.key, **error.context)
            deps.chat.ephemeral(click.channel, click.user, note)

        engine.background(run)

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
            except UserError as error:
                note = ephemeral(deps, error.key, **error.context)
                deps.chat.ephemeral(click.channel, click.user, note)
                return
            except Exception:
                ref = uuid.uuid4().hex[:8]
                log.exception("unexpected error, reference %s", ref)
                note = ephemeral(deps, "error.internal", ref=ref)
                deps.chat.ephemeral(click.channel, click.user, note)
                return
            engine.submit(operation.id)
            tell_requester_if_unseen(deps, operation_card(operation.id), body["response_url"])
            # the blocked message cannot start a second release: it now says who overrode it
            done = deps.renderer.message(
                "ephemeral", key="readiness.override.done", user=click.user, id=operation.id
            )
            respond(text=done.text, blocks=done.blocks, replace_original=True)

        engine.background(run)
