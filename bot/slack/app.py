"""Bolt wiring: the only place that builds the Slack app."""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
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
from bot.slack.errors import register_error_handler
from bot.slack.metadata import ViewSeal
from bot.slack.validation import RefuseMalformed

log = logging.getLogger("runback.slack")


class _TokenFromEnvironment(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment when no ``token`` is given, then warns
    that the ``client`` Runback passes (built with that same token) wins over it: true, and
    nothing to act on, so the warning is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def build_app(deps: Deps, engine: Engine, client: WebClient, signing_secret: str) -> App:
    bolt_log = logging.getLogger("runback.bolt")
    if not any(isinstance(f, _TokenFromEnvironment) for f in bolt_log.filters):
        bolt_log.addFilter(_TokenFromEnvironment())
    app = App(
        name="runback",  # else Bolt names it by inspect.stack(), which reads every frame's source
        client=client,
        signing_secret=signing_secret,
        # The listener runs in the request's own thread and its answer leaves when it returns.
        # Listeners only ack and hand their work to the engine's lanes, so nothing is lost by
        # it, and without it every ack waited for Bolt's 10 ms poll on a second thread
        # (slack_bolt/listener/thread_runner.py: ``time.sleep(0.01)`` until ack() is called).
        process_before_response=True,
        logger=bolt_log,
    )
    app.middleware(RefuseMalformed())  # before every listener: the fields they read are there
    register_error_handler(app, deps)  # what a listener raises, said to its sender
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
