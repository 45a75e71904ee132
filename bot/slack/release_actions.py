"""`/deploy` and the release card's buttons."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.config import Role
from bot.ops import release
from bot.ops.cards import operation_card, tell_requester_if_unseen
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.slack.commands import ack_with, answer_later, ephemeral

ROLLERS = frozenset({Role.SENIOR_DEVELOPER, Role.TECH_LEAD, Role.ON_CALL})  # may roll back
STEERERS = frozenset({Role.SENIOR_DEVELOPER, Role.TECH_LEAD})  # may pause, resume, proceed


def register(app: App, deps: Deps, engine: Engine) -> None:
    @app.command("/deploy")
    @engine.tracked
    def deploy_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        words = (command.get("text") or "").split()
        if len(words) != 2:
            ack_with(ack, ephemeral(deps, "error.usage.deploy"))
            return
        ack()
        request = release.ReleaseRequest(
            service=words[0], image=words[1], user=command["user_id"], channel=command["channel_id"]
        )

        def work() -> None:
            operation = release.request_release(deps, request)
            engine.submit(operation.id)
            tell_requester_if_unseen(deps, operation_card(operation.id), command["response_url"])

        answer_later(engine, deps, respond, work)

    def button(work: Callable[[str, str], Any], allowed: frozenset[Role] | None) -> Any:
        @engine.tracked
        def handler(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
            ack()
            user = body["user"]["id"]
            channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
            value = str(action.get("value", ""))

            def run() -> None:
                try:
                    if allowed is not None and not allowed & deps.roles(user):
                        raise UserError("error.release.roles")
                    operation = work(value, user)
                except UserError as error:
                    message = deps.renderer.message("ephemeral", key=error.key, **error.context)
                    deps.chat.ephemeral(channel, user, message)
                    return
                engine.submit(operation.id)

            engine.background(run)

        return handler

    def approve(approval_id: str, user: str) -> Any:
        return release.decide_full_traffic(deps, approval_id, user, approve=True)

    def roll_back(operation_id: str, user: str) -> Any:
        return release.roll_back(deps, operation_id, user)

    def pause(operation_id: str, user: str) -> Any:
        return release.pause(deps, operation_id, user)

    def resume(operation_id: str, user: str) -> Any:
        return release.resume(deps, operation_id, user)

    app.action("release_approve_full")(button(approve, None))  # the matrix decides
    app.action("release_roll_back")(button(roll_back, ROLLERS))
    app.action("release_pause")(button(pause, STEERERS))
    app.action("release_resume")(button(resume, STEERERS))
    app.action("release_proceed")(button(resume, STEERERS))
