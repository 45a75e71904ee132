"""The Monitoring webhook's answer: parse, record, and hand the judgement to the engine."""

from __future__ import annotations

from typing import Any

from bot.gcp.alerts import AlertError, parse_alert
from bot.ops import incidents
from bot.ops.context import Deps
from bot.ops.engine import Engine


def handle_alert(deps: Deps, engine: Engine, body: bytes) -> tuple[int, dict[str, Any]]:
    """400 with a reason for anything that is not a usable alert; nothing else happens then."""
    try:
        alert = parse_alert(body)
    except AlertError as error:
        deps.audit("cloud-monitoring", "incident.alert_refused", "refused", why=str(error)[:300])
        return 400, {"error": str(error)}
    with engine.track():
        outcome = incidents.receive_alert(deps, alert)
        if outcome.judge:
            engine.judge_incident(outcome.incident_id)
    return 200, {"incident": outcome.incident_id, "status": outcome.status}
