"""`/deploy` and the release card's buttons."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.ops import release
from bot.ops.cards import operation_card, tell_requester_if_unseen
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.policy.approvals import Steer, may_steer
from bot.ports import Message
from bot.slack import deploy_migration
from bot.slack.answers import ack_with, answer_later, ephemeral, open_modal_at_once, outcome
from bot.slack.buttons import Click, button
from bot.slack.deploy_migration import form_view, parse_deploy
from bot.slack.metadata import ViewSeal

log = logging.getLogger("runback.slack")


def register(app: App, deps: Deps, engine: Engine, seal: ViewSeal) -> None:
    @app.command("/deploy")
    @engine.tracked
    def deploy_command(
        ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        options = parse_deploy(command.get("text") or "")
        if options is None:
            ack_with(ack, ephemeral(deps, "error.usage.deploy"))
            return
        if options.migration and deps.config.service(options.service) is None:
            known = deps.config.service_names
            ack_with(
                ack, ephemeral(deps, "error.unknown_service", service=options.service, known=known)
            )
            return
        ack()
        if options.migration:
            form = functools.partial(form_view, deps, command, options, seal)
            open_modal_at_once(engine, deps, client, respond, command["trigger_id"], form)
            return
        request = release.ReleaseRequest(
            service=options.service,
            image=options.image,
            user=command["user_id"],
            channel=command["channel_id"],
            flag=options.flag,
        )

        answer_later(engine, deps, respond, lambda: start(request, command["response_url"]))

    def start(request: release.ReleaseRequest, response_url: str = "") -> Message | None:
        """Start the release; answer the requester with its image's warnings, or with a
        confirm button when the image needs their explicit go-ahead."""
        try:
            operation = release.request_release(deps, request)
        except release.NeedsConfirmation as needed:
            return deps.renderer.message(
                "deploy_confirm",
                service=request.service,
                image=request.image,
                flag=request.flag,
                ws=needed.warnings,
            )
        except release.ReadinessBlocked as blocked:
            from bot.slack.readiness_actions import post_blocked

            return post_blocked(deps, blocked)
        engine.submit(operation.id)
        if response_url:
            tell_requester_if_unseen(deps, operation_card(operation.id), response_url)
        warnings = release.ReleaseData.of(operation).warnings
        if not warnings:
            return None
        return ephemeral(
            deps,
            "notice.release.warned",
            service=operation.service,
            ws=warnings,
            blue=operation.from_revision,
        )

    @app.action("release_confirm_deploy")
    @engine.tracked
    def confirm_deploy(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        try:
            asked = json.loads(str(action.get("value", "")))
            service, image = str(asked["service"]), str(asked["image"])
            flag = str(asked.get("flag") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            answer_later(engine, deps, respond, lambda: ephemeral(deps, "notice.unknown_request"))
            return
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        request = release.ReleaseRequest(
            service=service,
            image=image,
            user=body["user"]["id"],
            channel=channel,
            confirmed=True,
            flag=flag,
        )

        # The prompt is replaced by what happened, so it cannot start a release twice. A
        # response_url may replace the original message even when it is ephemeral
        # (https://docs.slack.dev/messaging/modifying-messages).
        def run() -> None:
            message = outcome(deps, lambda: start(request, body["response_url"]))
            if message is None:
                respond(delete_original=True)
            else:
                respond(text=message.text, blocks=message.blocks, replace_original=True)

        engine.background(run)

    def for_roles(work: Callable[[str, str], Any], steer: Steer | None) -> Any:
        """The release's buttons: the approval matrix decides (Approve, Reject: ``steer`` None),
        or who may ``steer`` a running release (bot/policy/approvals.py)."""

        def checked(click: Click) -> Any:
            if steer is not None and not may_steer(steer, deps.roles(click.user)):
                raise UserError("error.release.roles")
            return work(click.value, click.user)

        return button(deps, engine, checked)

    def approve(approval_id: str, user: str) -> Any:
        return release.decide_full_traffic(deps, approval_id, user, approve=True)

    def reject(approval_id: str, user: str) -> Any:
        return release.decide_full_traffic(deps, approval_id, user, approve=False)

    def roll_back(operation_id: str, user: str) -> Any:
        return release.roll_back(deps, operation_id, user)

    def pause(operation_id: str, user: str) -> Any:
        return release.pause(deps, operation_id, user)

    def resume(operation_id: str, user: str) -> Any:
        return release.resume(deps, operation_id, user)

    app.action("release_approve_full")(for_roles(approve, None))  # the matrix decides
    app.action("release_approve_migration")(for_roles(approve, None))
    app.action("release_reject")(for_roles(reject, None))
    app.action("release_roll_back")(for_roles(roll_back, Steer.ROLL_BACK))
    app.action("release_pause")(for_roles(pause, Steer.STEER_RELEASE))
    app.action("release_resume")(for_roles(resume, Steer.STEER_RELEASE))
    app.action("release_proceed")(for_roles(resume, Steer.STEER_RELEASE))
    deploy_migration.register(app, deps, engine, start, seal)
