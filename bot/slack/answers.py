"""Answering the person who typed a command or clicked: at once in the ack, or later, privately,
with a UserError turned into its message and anything unexpected into a reference to the logs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.ports import Message

log = logging.getLogger("runback.slack")


def groups_context(deps: Deps) -> dict[str, Any]:
    """For refusals and /ops whoami: say when user groups could not be read, rather than
    silently counting a role as missing."""
    return {"groups_problem": deps.groups_problem(), "groups": deps.group_handles()}


def ephemeral(deps: Deps, key: str, **context: Any) -> Message:
    return deps.renderer.message("ephemeral", key=key, **context)


def respond_privately(respond: Respond, message: Message) -> None:
    """Answer the requester privately. An answer Slack does not take is logged in one line
    (never the response_url: it lets anyone post) and changes nothing else."""
    try:
        response = respond(text=message.text, blocks=message.blocks, response_type="ephemeral")
    except Exception as error:  # urllib's, slack_sdk's: all end the same way
        log.warning("could not answer the requester: %s", type(error).__name__)
        return
    if response is not None and response.status_code >= 400:
        log.warning("could not answer the requester: Slack answered %s", response.status_code)


def ack_with(ack: Ack, message: Message) -> None:
    ack(text=message.text, blocks=message.blocks, response_type="ephemeral")


def outcome(deps: Deps, work: Callable[[], Message | None]) -> Message | None:
    """What to tell the person after ``work``: its own message, a UserError's message, or for
    anything unexpected a reference to the logs (never the error itself: it may hold secrets).
    The one place a failure of Runback's work becomes words for the user."""
    try:
        return work()
    except UserError as error:
        return user_error_message(deps, error)
    except Exception:
        return internal_error_message(deps)


def user_error_message(deps: Deps, error: UserError) -> Message:
    return ephemeral(deps, error.key, **{**groups_context(deps), **error.context})


def internal_error_message(deps: Deps, error: BaseException | None = None) -> Message:
    """A reference the user can quote, and the traceback under it in the log (``error``, or
    the exception being handled)."""
    ref = uuid.uuid4().hex[:8]
    log.error("unexpected error, reference %s", ref, exc_info=error or True)
    return ephemeral(deps, "error.internal", ref=ref)


def answer_later(
    engine: Engine,
    deps: Deps,
    respond: Respond,
    work: Callable[[], Message | None],
    urgent: bool = False,
) -> None:
    """After the ack: run ``work`` on Runback's own pool and answer only the user who asked
    (``outcome``)."""

    def run() -> None:
        message = outcome(deps, work)
        if message is not None:
            engine.answer(lambda: respond_privately(respond, message))

    engine.background(run, urgent=urgent)


def open_modal_at_once(
    engine: Engine,
    deps: Deps,
    client: WebClient,
    respond: Respond,
    trigger_id: str,
    view: Callable[[], dict[str, Any]],
) -> None:
    """After the ack, ``view`` opened with ``trigger_id`` on the engine's prompt lane: the
    trigger_id lives 3 s, so never behind other commands' work or answers. A refusal (an expired
    trigger_id...) or anything raised is told to the requester privately (``outcome``)."""

    def open_view() -> Message | None:
        try:
            client.views_open(trigger_id=trigger_id, view=view())
        except SlackApiError as error:
            log.warning("views.open failed: %s", error.response.get("error"))
            return ephemeral(deps, "migration.modal_failed")
        return None

    def run() -> None:
        message = outcome(deps, open_view)
        if message is not None:
            respond_privately(respond, message)

    engine.promptly(run)


def tell_later(
    engine: Engine,
    deps: Deps,
    channel: str,
    user: str,
    work: Callable[[], Message | None],
    urgent: bool = False,
) -> None:
    """After the ack of a click or form: run ``work`` on Runback's own pool and tell only the
    user who clicked, in the channel (``outcome``)."""

    def run() -> None:
        message = outcome(deps, work)
        if message is not None:
            deps.chat.ephemeral(channel, user, message)

    engine.background(run, urgent=urgent)
