"""Slash commands: parse, ack at once, hand the work to bot.ops, answer the user."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.ops.rollback import RollbackRequest, request_rollback
from bot.policy.approvals import allowed_actions
from bot.ports import CloudRunError, Message

log = logging.getLogger("runback.slack")


@dataclass(frozen=True)
class ParsedRollback:
    service: str
    revision: str | None
    reason: str


def parse_rollback(text: str) -> ParsedRollback | None:
    """``SERVICE [REVISION] [reason...]``. The second word is a revision when it starts with the
    service's name and a dash (Cloud Run names revisions that way); otherwise it begins the
    reason. None when the text is empty."""
    words = text.split()
    if not words:
        return None
    service, rest = words[0], words[1:]
    revision = None
    if rest and rest[0].startswith(f"{service}-"):
        revision, rest = rest[0], rest[1:]
    return ParsedRollback(service, revision, " ".join(rest))


def ephemeral(deps: Deps, key: str, **context: Any) -> Message:
    return deps.renderer.message("ephemeral", key=key, **context)


def _respond(respond: Respond, message: Message) -> None:
    respond(text=message.text, blocks=message.blocks, response_type="ephemeral")


def _ack(ack: Ack, message: Message) -> None:
    ack(text=message.text, blocks=message.blocks, response_type="ephemeral")


def _internal_error(deps: Deps, respond: Respond) -> None:
    ref = uuid.uuid4().hex[:8]
    log.exception("unexpected error, reference %s", ref)
    _respond(respond, ephemeral(deps, "error.internal", ref=ref))


def register(app: App, deps: Deps, engine: Engine) -> None:
    @app.command("/rollback")
    def rollback_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        with engine.track():
            parsed = parse_rollback(command.get("text") or "")
            if parsed is None:
                _ack(ack, ephemeral(deps, "error.usage.rollback"))
                return
            ack()
            request = RollbackRequest(
                service=parsed.service,
                revision=parsed.revision,
                reason=parsed.reason,
                user=command["user_id"],
                channel=command["channel_id"],
            )
            try:
                operation = request_rollback(deps, request)
            except UserError as error:
                _respond(respond, ephemeral(deps, error.key, **error.context))
                return
            except Exception:
                _internal_error(deps, respond)
                return
            if operation.state == "approved":
                engine.submit(operation.id)

    @app.command("/traffic")
    def traffic_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        with engine.track():
            name = (command.get("text") or "").strip()
            if not name or len(name.split()) != 1:
                _ack(ack, ephemeral(deps, "error.usage.traffic"))
                return
            service = deps.config.service(name)
            if service is None:
                _ack(
                    ack,
                    ephemeral(
                        deps, "error.unknown_service", service=name, known=deps.config.service_names
                    ),
                )
                return
            ack()
            try:
                _respond(respond, traffic_message(deps, name))
            except CloudRunError as error:
                _respond(
                    respond,
                    ephemeral(
                        deps,
                        "error.cloudrun_unavailable",
                        service=name,
                        detail=error.detail or error.reason,
                    ),
                )

    @app.command("/ops")
    def ops_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        with engine.track():
            words = (command.get("text") or "").split()
            sub = words[0].lower() if words else "help"
            if sub == "help":
                channel = deps.config.channels.incidents.name
                _ack(ack, deps.renderer.message("help", channel=channel))
            elif sub == "whoami":
                ack()
                _respond(respond, whoami_message(deps, command["user_id"], command["channel_id"]))
            else:
                _ack(ack, ephemeral(deps, "error.usage.ops", sub=sub))


def traffic_message(deps: Deps, name: str) -> Message:
    service = deps.config.service(name)
    assert service is not None
    state = deps.cloudrun.get_service(deps.service_ref(service))
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
        holder=deps.store.lock_holder(name),
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
    ]
    return deps.renderer.message(
        "whoami",
        user=user,
        roles=sorted(str(r) for r in held),
        decisions=rows,
        channel=incidents.name,
    )
