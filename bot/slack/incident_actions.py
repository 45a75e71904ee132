"""The incident message's buttons and `/ops incidents`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import App

from bot.ops import incidents
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.policy.approvals import Steer, may_steer
from bot.slack.buttons import Click, button
from bot.store import Operation


def register(app: App, deps: Deps, engine: Engine) -> None:
    def handle(work: Callable[[str, str], Any]) -> Callable[..., None]:
        def on_incident(click: Click) -> None:
            work(click.value, click.user)

        return button(deps, engine, on_incident)

    def roll_back(click: Click) -> Operation:  # the engine runs it at once when it may
        return incidents.request_rollback_from_card(deps, click.value, click.user)

    def responder_only(work: Callable[[str, str], Any]) -> Callable[[str, str], None]:
        def checked(incident_id: str, user: str) -> None:
            if not may_steer(Steer.RESPOND_TO_INCIDENT, deps.roles(user)):
                raise UserError("error.incident.responder_only")
            work(incident_id, user)

        return checked

    def resolve(incident_id: str, user: str) -> None:
        record = deps.store.incidents.incident(incident_id)
        if record is None or record.state == "resolved":
            raise UserError("notice.incident_not_open", state="resolved")
        incidents.resolve(deps, incident_id, user)

    app.action("incident_roll_back")(button(deps, engine, roll_back, urgent=True))
    app.action("incident_observe")(
        handle(responder_only(lambda i, u: incidents.start_observing(deps, i, u)))
    )
    app.action("incident_acknowledge")(handle(lambda i, u: incidents.acknowledge(deps, i, u)))
    app.action("incident_resolve")(handle(responder_only(resolve)))
