"""The incident message's buttons and `/ops incidents`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot.config import Role
from bot.ops import incidents
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError

RESPONDERS = frozenset({Role.ON_CALL, Role.TECH_LEAD})  # may observe or resolve an incident


def register(app: App, deps: Deps, engine: Engine) -> None:
    def handle(work: Callable[[str, str], None]) -> Callable[..., None]:
        @engine.tracked
        def handler(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
            ack()
            user = body["user"]["id"]
            channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
            incident_id = str(action.get("value", ""))

            def run() -> None:
                try:
                    work(incident_id, user)
                except UserError as error:
                    message = deps.renderer.message("ephemeral", key=error.key, **error.context)
                    deps.chat.ephemeral(channel, user, message)

            engine.background(run)

        return handler

    def roll_back(incident_id: str, user: str) -> None:
        operation = incidents.request_rollback_from_card(deps, incident_id, user)
        if operation.state == "approved":
            engine.submit(operation.id)

    def responder_only(work: Callable[[str, str], Any]) -> Callable[[str, str], None]:
        def checked(incident_id: str, user: str) -> None:
            if not RESPONDERS & deps.roles(user):
                raise UserError("error.incident.responder_only")
            work(incident_id, user)

        return checked

    def resolve(incident_id: str, user: str) -> None:
        record = deps.store.incident(incident_id)
        if record is None or record.state == "resolved":
            raise UserError("notice.incident_not_open", state="resolved")
        incidents.resolve(deps, incident_id, user)

    app.action("incident_roll_back")(handle(roll_back))
    app.action("incident_observe")(
        handle(responder_only(lambda i, u: incidents.start_observing(deps, i, u)))
    )
    app.action("incident_acknowledge")(handle(lambda i, u: incidents.acknowledge(deps, i, u)))
    app.action("incident_resolve")(handle(responder_only(resolve)))
