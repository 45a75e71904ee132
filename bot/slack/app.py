"""Bolt wiring: the only place that builds the Slack app."""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient

from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.slack import (
    actions,
    commands,
    database_commands,
    flag_command,
    incident_actions,
    migration_check,
    readiness_actions,
    release_actions,
)
from bot.slack.metadata import ViewSeal
from bot.slack.validation import RefuseMalformed

log = logging.getLogger("runback.slack")


def build_app(deps: Deps, engine: Engine, client: WebClient, signing_secret: str) -> App:
    app = App(
        client=client,
        signing_secret=signing_secret,
        process_before_response=False,  # ack first, then work: Slack wants its answer in 3 s
        logger=logging.getLogger("runback.bolt"),
    )
    app.middleware(RefuseMalformed())  # before every listener: the fields they read are there
    commands.register(app, deps, engine)
    actions.register(app, deps, engine)
    incident_actions.register(app, deps, engine)
    release_actions.register(app, deps, engine, ViewSeal(signing_secret))
    migration_check.register(app, deps, engine)
    flag_command.register(app, deps, engine)
    database_commands.register(app, deps, engine)
    readiness_actions.register(app, deps, engine)
    commands.register_unknown_command(app, deps)  # last: it takes every command left over
    return app
