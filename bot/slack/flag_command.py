"""`/flag SERVICE [NAME on|off [reason...]]` and the flag card's Roll back now button."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.ops import flags
from bot.ops.cards import operation_card, tell_requester_if_unseen
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.policy.approvals import Steer, may_steer
from bot.ports import Message
from bot.slack.answers import ack_with, answer_later, ephemeral
from bot.slack.buttons import Click, button

# May press a flip's Roll back now: who may steer a release, and the on-call engineer.


NEW = "--new"  # the person confirms a flag no serving revision has yet


@dataclass(frozen=True)
class ParsedFlag:
    service: str
    name: str = ""  # "" : list the service's flags
    switch: str = ""
    reason: str = ""
    new: bool = False


def parse_flag(text: str) -> ParsedFlag | None:
    """``SERVICE`` or ``SERVICE NAME on|off [--new] [reason...]`` (``--new`` also last); None
    for anything else (usage)."""
    words = text.split()
    if len(words) == 1:
        return ParsedFlag(words[0])
    if len(words) < 3:
        return None
    rest = words[3:]
    new = bool(rest) and NEW in (rest[0], rest[-1])
    if new:
        rest = rest[1:] if rest[0] == NEW else rest[:-1]
    return ParsedFlag(words[0], words[1], words[2], " ".join(rest), new)


def register(app: App, deps: Deps, engine: Engine) -> None:
    @app.command("/flag")
    @engine.tracked
    def flag_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        parsed = parse_flag(command.get("text") or "")
        if parsed is None:
            ack_with(ack, ephemeral(deps, "error.usage.flag"))
            return
        ack()
        if not parsed.name:
            answer_later(engine, deps, respond, lambda: flags.list_flags(deps, parsed.service))
            return
        request = flags.FlagRequest(
            service=parsed.service,
            name=parsed.name,
            switch=parsed.switch,
            reason=parsed.reason,
            user=command["user_id"],
            channel=command["channel_id"],
            new=parsed.new,
        )

        def work() -> Message | None:
            operation = flags.request_flip(deps, request)
            engine.submit(operation.id)
            tell_requester_if_unseen(deps, operation_card(operation.id), command["response_url"])
            return None

        answer_later(engine, deps, respond, work)

    def roll_back(click: Click) -> Any:
        if not may_steer(Steer.ROLL_BACK, deps.roles(click.user)):
            raise UserError("error.release.roles")
        return flags.roll_back(deps, click.value, click.user)

    app.action("flag_roll_back")(button(deps, engine, roll_back, urgent=True))
