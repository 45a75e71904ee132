"""`/ops backup`, `/ops backups`, `/ops restore` and the buttons of their cards."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.ops import backups, restore
from bot.ops.cards import operation_card, tell_requester_if_unseen
from bot.ops.context import Deps
from bot.ops.database_approvals import decide, go_back
from bot.ops.engine import Engine
from bot.ports import Message
from bot.slack.answers import ack_with, answer_later, ephemeral, outcome
from bot.slack.buttons import Click, button

log = logging.getLogger("runback.slack")


def ops_database(
    deps: Deps,
    engine: Engine,
    sub: str,
    words: list[str],
    command: dict[str, Any],
    ack: Ack,
    respond: Respond,
) -> None:
    """The ``/ops`` subcommands ``backup``, ``backups`` and ``restore`` (``words`` after it)."""
    user, channel = command["user_id"], command["channel_id"]
    if sub == "backup":
        if not words:
            ack_with(ack, ephemeral(deps, "error.usage.backup"))
            return
        ack()
        request = backups.BackupRequest(words[0], " ".join(words[1:]), user, channel)

        def take() -> Message | None:
            operation = backups.request_backup(deps, request)
            engine.submit(operation.id)
            tell_requester_if_unseen(deps, operation_card(operation.id), command["response_url"])
            return None

        answer_later(engine, deps, respond, take)
    elif sub == "backups":
        if len(words) != 1:
            ack_with(ack, ephemeral(deps, "error.usage.backups"))
            return
        ack()
        answer_later(engine, deps, respond, lambda: backups.backups_message(deps, words[0]))
    else:  # restore
        if len(words) != 2:
            ack_with(ack, ephemeral(deps, "error.usage.restore"))
            return
        ack()
        asked = restore.RestoreRequest(words[0], words[1], user, channel)
        answer_later(
            engine,
            deps,
            respond,
            lambda: deps.renderer.message(
                "db_restore_confirm", p=restore.preview_restore(deps, asked)
            ),
        )


def register(app: App, deps: Deps, engine: Engine) -> None:
    @app.action("restore_confirm")
    @engine.tracked
    def confirm_restore(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        user = body["user"]["id"]

        # The prompt is replaced by what happened, so it cannot ask twice.
        def run() -> None:
            try:
                asked = json.loads(str(action.get("value", "")))
                request = restore.RestoreRequest(
                    str(asked["service"]),
                    str(asked["backup"]),
                    user,
                    channel,
                    clone=str(asked.get("clone", "")),
                )
            except (ValueError, KeyError, TypeError):
                message = ephemeral(deps, "notice.unknown_request")
            else:
                message = _request(request, body.get("response_url", ""))
            respond(text=message.text, blocks=message.blocks, replace_original=True)

        engine.background(run)

    def _request(request: restore.RestoreRequest, response_url: str) -> Message:
        def asked() -> Message:
            operation = restore.request_restore(deps, request)
            if response_url:
                tell_requester_if_unseen(deps, operation_card(operation.id), response_url)
            return ephemeral(
                deps, "restore.confirm.asked", service=operation.service, channel=operation.channel
            )

        message = outcome(deps, asked)
        assert message is not None  # asked() always has something to say
        return message

    def decision(approve: bool) -> Any:
        def work(click: Click) -> Any:
            operation = decide(deps, click.value, click.user, approve)
            return operation if operation.state in ("approved", "starting") else None

        return button(deps, engine, work)

    app.action("db_approve")(decision(True))
    app.action("db_reject")(decision(False))
    app.action("restore_go_back")(
        button(deps, engine, lambda c: go_back(deps, c.value, c.user, c.channel), urgent=True)
    )
