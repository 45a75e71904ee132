"""One shape for every button: ack at once, then the work on Runback's own pool, answering
only the clicker when it is refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack

from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.slack.answers import tell_later
from bot.store import Operation


@dataclass(frozen=True)
class Click:
    user: str  # from the signed payload, never from the button's value
    channel: str
    value: str


def click_of(body: dict[str, Any], action: dict[str, Any]) -> Click:
    channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
    return Click(body["user"]["id"], channel, str(action.get("value", "")))


def button(
    deps: Deps, engine: Engine, work: Callable[[Click], Operation | None], urgent: bool = False
) -> Callable[..., None]:
    """A Bolt action listener around ``work``: a UserError becomes an ephemeral note to the
    clicker; an operation it returns is handed to the engine to run."""

    @engine.tracked
    def handler(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        click = click_of(body, action)

        def run() -> None:
            operation = work(click)
            if operation is not None:
                engine.submit(operation.id)

        tell_later(engine, deps, click.channel, click.user, run, urgent=urgent)

    return handler
