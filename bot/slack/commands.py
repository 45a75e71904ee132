"""Slash commands: parse, ack at once, hand the work to bot.ops, answer the user."""

from __future__ import annotations

import difflib
import functools
import logging
import re
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.config import APPROVAL_ONLY_ACTIONS
from bot.ops.cards import operation_card, tell_requester_if_unseen
from bot.ops.context import Deps
from bot.ops.drill import drills_message, request_drill
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.ops.incidents import open_incidents_message
from bot.ops.preemption import request_rollback
from bot.ops.procedure import post_procedure
from bot.ops.readiness import check_message
from bot.ops.rollback import RepeatNeedsConfirmation, RollbackRequest
from bot.policy.approvals import allowed_actions
from bot.ports import CloudRunError, Message
from bot.slack.actions import repeat_button_value
from bot.slack.answers import (
    ack_with,
    answer_later,
    ephemeral,
    groups_context,
    open_modal_at_once,
)
from bot.slack.database_commands import ops_database
from bot.slack.migration_check import modal_view

log = logging.getLogger("runback.slack")

# Every slash command Runback answers (slack-manifest.yaml lists the same ones).
COMMANDS = ("/rollback", "/deploy", "/traffic", "/flag", "/ops")


@dataclass(frozen=True)
class ParsedRollback:
    service: str
    rest: str  # ``[REVISION] [reason...]``: read against the real revisions by bot.ops.rollback


def parse_rollback(text: str) -> ParsedRollback | None:
    """``SERVICE [REVISION] [reason...]``; None when the text is empty. Whether the second word
    is a revision needs the service's real revision list, so bot.ops decides that."""
    words = text.split()
    if not words:
        return None
    return ParsedRollback(words[0], " ".join(words[1:]))


def register(app: App, deps: Deps, engine: Engine) -> None:
    # The same words every time (app.yaml is read once): rendered once, not on every ack, where
    # the template was a fifth of the bot's CPU per `/ops help` under load (py-spy --gil).
    help_message = functools.cache(
        lambda: deps.renderer.message("help", channel=deps.config.channels.incidents.name)
    )

    @app.command("/rollback")
    @engine.tracked
    def rollback_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        parsed = parse_rollback(command.get("text") or "")
        if parsed is None:
            ack_with(ack, ephemeral(deps, "error.usage.rollback"))
            return
        ack()
        request = RollbackRequest(
            service=parsed.service,
            revision=None,
            reason=parsed.rest,
            user=command["user_id"],
            channel=command["channel_id"],
            from_command=True,
        )

        def work() -> Message | None:
            try:
                operation = request_rollback(deps, request)
            except RepeatNeedsConfirmation as question:
                value = repeat_button_value(question.context)
                return deps.renderer.message("rollback_repeat", value=value, **question.context)
            engine.submit(operation.id)  # runs only what is runnable (not a pending approval)
            tell_requester_if_unseen(deps, operation_card(operation.id), command["response_url"])
            return None

        answer_later(engine, deps, respond, work, urgent=True)

    @app.command("/traffic")
    @engine.tracked
    def traffic_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        name = (command.get("text") or "").strip()
        if not name or len(name.split()) != 1:
            ack_with(ack, ephemeral(deps, "error.usage.traffic"))
            return
        if deps.config.service(name) is None:
            known = deps.config.service_names
            ack_with(ack, ephemeral(deps, "error.unknown_service", service=name, known=known))
            return
        ack()
        answer_later(engine, deps, respond, lambda: traffic_message(deps, name))

    @app.command("/ops")
    @engine.tracked
    def ops_command(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        words = (command.get("text") or "").split()
        sub = words[0].lower() if words else "help"
        if sub == "help":
            ack_with(ack, help_message())
        elif sub == "whoami":
            ack()
            user, channel = command["user_id"], command["channel_id"]
            answer_later(engine, deps, respond, lambda: whoami_message(deps, user, channel))
        elif sub == "incidents":
            ack()
            answer_later(engine, deps, respond, lambda: open_incidents_message(deps))
        elif sub in ("backup", "backups", "restore"):
            ops_database(deps, engine, sub, words[1:], command, ack, respond)
        elif sub == "migration-check":
            ack()
            view = functools.partial(modal_view, deps, command)
            open_modal_at_once(engine, deps, client, respond, command["trigger_id"], view)
        elif sub in READINESS_SUBCOMMANDS:
            readiness_command(engine, deps, ack, command, respond, words)
        else:
            close = difflib.get_close_matches(sub, OPS_SUBCOMMANDS, n=1)
            suggestion = " ".join([close[0], *words[1:]]) if close else ""
            ack_with(ack, ephemeral(deps, "error.usage.ops", sub=sub, suggestion=suggestion))


READINESS_SUBCOMMANDS = ("check", "procedure", "drill", "drills")
OPS_SUBCOMMANDS = (
    "help",
    "whoami",
    "incidents",
    "backup",
    "backups",
    "restore",
    "migration-check",
    *READINESS_SUBCOMMANDS,
)


def readiness_command(
    engine: Engine,
    deps: Deps,
    ack: Ack,
    command: dict[str, Any],
    respond: Respond,
    words: list[str],
) -> None:
    """``/ops check SERVICE``, ``/ops procedure``, ``/ops drill [SERVICE]``, ``/ops drills``."""
    sub, args = words[0].lower(), words[1:]
    user, channel = command["user_id"], command["channel_id"]
    if (sub == "check" and len(args) != 1) or (sub == "drill" and len(args) > 1):
        ack_with(ack, ephemeral(deps, f"readiness.usage.{sub}"))
        return
    if (sub == "procedure" and args) or (sub == "drills" and args not in ([], ["post"])):
        ack_with(ack, ephemeral(deps, f"readiness.usage.{sub}"))
        return
    ack()
    if sub == "check":
        answer_later(engine, deps, respond, lambda: check_message(deps, args[0]))
    elif sub == "procedure":

        def post() -> Message:
            post_procedure(deps, user, channel)
            return ephemeral(deps, "procedure.notice.posted")

        answer_later(engine, deps, respond, post)
    elif sub == "drill":

        def start() -> Message:
            operation = request_drill(deps, args[0] if args else None, user, channel)
            engine.submit(operation.id)
            team = operation.channel
            return ephemeral(deps, "drill.notice.started", service=operation.service, channel=team)

        answer_later(engine, deps, respond, start)
    else:
        to_channel = args == ["post"]
        answer_later(engine, deps, respond, lambda: drills_message(deps, channel, post=to_channel))


def register_unknown_command(app: App, deps: Deps) -> None:
    """Answer a command no other listener took, so a typo gets a clear note instead of Bolt's
    default for unhandled requests, which "prints warning logs and returns 404 to Slack" (the
    `raise_error_for_unhandled_request` option of slack_bolt.App). Register it last:
    App.dispatch runs the first listener that matches, in registration order."""

    @app.command(re.compile(r"^/"))
    def unknown_command(ack: Ack, command: dict[str, Any]) -> None:
        name = str(command.get("command") or "")
        close = difflib.get_close_matches(name.lower(), COMMANDS, n=1)
        message = ephemeral(
            deps,
            "error.usage.unknown_command",
            command=name,
            suggestion=close[0] if close else "",
            known=COMMANDS,
        )
        ack_with(ack, message)


def traffic_message(deps: Deps, name: str) -> Message:
    service = deps.config.service(name)
    assert service is not None
    try:
        state = deps.cloudrun.get_service(deps.service_ref(service))
    except CloudRunError as error:
        detail = error.detail or error.reason
        raise UserError("error.cloudrun_unavailable", service=name, detail=detail) from None
    lines: dict[str, dict[str, Any]] = {}
    for status in state.traffic:
        line = lines.setdefault(
            status.revision,
            {"revision": status.revision, "percent": 0, "tags": [], "latest": False},
        )
        line["percent"] += status.percent
        line["latest"] = line["latest"] or status.latest
        if status.tag:
            line["tags"].append(status.tag)
    ordered = sorted(lines.values(), key=lambda line: (-line["percent"], line["revision"]))
    return deps.renderer.message(
        "traffic",
        service=name,
        lines=ordered,
        uri=state.uri,
        reconciling=state.reconciling,
        holder=deps.store.operations.lock_holder(name),
    )


def whoami_message(deps: Deps, user: str, channel: str) -> Message:
    incidents = deps.config.channels.incidents
    held = deps.roles(user)
    decisions = allowed_actions(deps.config.approvals, held, channel == incidents.id)
    rows = [
        (
            str(action),
            {"verdict": str(d.verdict), "role": str(d.required_role), "why": str(d.refusal or "")},
        )
        for action, d in decisions.items()
        if action not in APPROVAL_ONLY_ACTIONS  # nobody requests these; the card says who approves
    ]
    return deps.renderer.message(
        "whoami",
        user=user,
        roles=sorted(str(r) for r in held),
        decisions=rows,
        channel=incidents.name,
        **groups_context(deps),
    )
