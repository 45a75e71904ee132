"""What an incident shows: its card, kept true once resolved, and `/ops incidents`."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from bot.ops.cards import incident_card, show
from bot.ops.context import Deps
from bot.ops.rollback import rollback_data
from bot.policy.gates import Verdict
from bot.store import IncidentRecord, Operation

ROLL_BACK_NOW = (str(Verdict.ROLLBACK), "observe_expired")


def incident_view(deps: Deps, record: IncidentRecord) -> dict[str, Any]:
    service = deps.config.service(record.service) if record.managed else None
    judgements = record.data.get("judgements") or []
    operation = (
        deps.store.operations.operation(record.operation_id) if record.operation_id else None
    )
    return {
        "id": record.id,
        "service": record.service,
        "managed": record.managed,
        "environment": service.environment if service else "unknown",
        "state": record.state,
        "verdict": record.verdict,
        "revision": record.revision,
        "alert": record.alert,
        "started_at": record.started_at,
        "received_at": record.received_at,
        "mitigated_at": record.mitigated_at,
        "resolved_at": record.resolved_at,
        "observe_until": record.observe_until,
        "minutes_left": _minutes_left(deps, record),
        "last": judgements[-1] if judgements else None,
        "waiting": record.data.get("waiting"),  # for Monitoring's next minute
        "auto_rollback": bool(service and service.auto_rollback),
        "acknowledged_by": record.data.get("acknowledged_by", []),
        "operation": _operation_view(operation),
        "resolved_by": record.data.get("resolved_by", ""),
        "resolved_how": record.data.get("resolved_how", ""),
        "thresholds": deps.config.thresholds.model_dump(),
        "measured": measured(record.alert or {}),
        "ratio": _is_ratio(record.alert or {}),
        "blocked_facts": record.data.get("rollback_blocked_facts") or {},
    } | _action_and_buttons(record, operation, bool(service and service.auto_rollback))


def measured(alert: dict[str, Any]) -> str:
    """What the alert measured, named for people: an error-rate policy is built on Cloud Run's
    ``request_count`` (5xx over all), whose display name "Request Count" says nothing of errors."""
    metric = str(alert.get("metric_type", ""))
    if "request_latencies" in metric:
        return "latency"
    names = f"{alert.get('policy_name', '')} {alert.get('condition_name', '')}".lower()
    five_xx = (alert.get("metric_labels") or {}).get("response_code_class") == "5xx"
    if "request_count" in metric and (five_xx or "error" in names or "5xx" in names):
        return "error_rate"
    return "other"


def _is_ratio(alert: dict[str, Any]) -> bool:
    """An error-rate threshold at or below 1 is a ratio (0.01 = 1%), shown as a percentage."""
    if measured(alert) != "error_rate":
        return False
    try:
        threshold = float(alert.get("threshold_value", ""))
    except ValueError:
        return False
    return math.isfinite(threshold) and 0 < threshold <= 1


def _minutes_left(deps: Deps, record: IncidentRecord) -> int | None:
    """The countdown shown while observing, in Monitoring's minutes still to come (the
    observation ends by data time), refreshed at every judgement."""
    until = record.observe_until
    if until is None:
        return None
    judged = (record.data.get("judged") or {}).get("until")
    seen = datetime.fromisoformat(judged) if judged else deps.clock.now()
    return max(math.ceil((until - seen).total_seconds() / 60), 0)


def _operation_view(operation: Operation | None) -> dict[str, Any] | None:
    """The rollback that answered this incident, as the card keeps showing it once resolved."""
    if operation is None:
        return None
    # a release rolled back goes to blue, a flag flip to the revision before it
    released = operation.kind in ("release", "flag")
    return {
        "id": operation.id,
        "kind": operation.kind,
        "state": operation.state,
        "to_revision": operation.from_revision if released else operation.to_revision,
        "requested_by": operation.requested_by,
        "automatic": rollback_data(operation).automatic,
        "finished_at": operation.finished_at,
        "succeeded": operation.state in ("succeeded", "rolled_back"),
        "migration_guard": [g.model_dump() for g in rollback_data(operation).migration_guard],
    }


BLOCKED_KEYS = (
    "error.busy",
    "error.cloudrun_unavailable",
    "error.target.no_previous",
    "error.target.not_serving",
    "error.target.all_rolled_back",
    "error.target.not_ready",
)


MOVING_TRAFFIC = ("approved", "shifting", "verifying", "rolling_back", "applying")


def _action_and_buttons(
    record: IncidentRecord, operation: Operation | None, automatic: bool
) -> dict[str, Any]:
    """Which "Action:" line the message shows, and which buttons make sense now.

    The Roll back button stays until a rollback is actually moving traffic: a scheduled request
    waiting for approval never hides it (an on-call click supersedes that request)."""
    blocked = record.data.get("rollback_blocked", "")
    moving = operation is not None and operation.state in MOVING_TRAFFIC
    if not record.service:
        return {"action": "unidentified", "buttons": [], "blocked": ""}
    if not record.managed:
        ambiguous = (record.alert or {}).get("identity") == "ambiguous"
        return {"action": "ambiguous" if ambiguous else "unmanaged", "buttons": [], "blocked": ""}
    if record.state in ("mitigated", "resolved"):
        buttons = ["resolve"] if record.state == "mitigated" else []
        return {"action": record.state, "buttons": buttons, "blocked": ""}
    guarded = bool(rollback_data(operation).migration_guard)
    if operation is not None and operation.state == "awaiting_approval" and guarded:
        action = "rollback_migration_guard"  # asked, not rolled back: the card says why
    elif operation is not None and operation.state == "awaiting_approval":
        action = "rollback_pending"
    elif guarded and operation is not None and operation.state in ("rejected", "expired"):
        action = "rollback_migration_declined"  # never "Rollback triggered": nothing moved
    elif operation is not None and moving:
        action = "rollback_running"
    elif record.verdict in ROLL_BACK_NOW:
        action = (
            ("rollback_blocked" if blocked else "rollback_auto")
            if automatic
            else ("rollback_manual")
        )
    else:
        action = record.verdict or "judging"
    # A rollback past a destructive migration waits for a tech lead on its own card: a Roll
    # back click here would only ask the same question again.
    waiting_for_guard = guarded and operation is not None and operation.state == "awaiting_approval"
    buttons = [] if moving or waiting_for_guard else ["roll_back"]
    if record.observe_until is None and not moving:
        buttons.append("observe")
    if record.verdict == str(Verdict.PROCEED):  # recovered: a person may close it
        buttons.append("resolve")
    buttons.append("acknowledge")
    return {
        "action": action,
        "buttons": buttons,
        "blocked": blocked if blocked in BLOCKED_KEYS else "other",
    }


def refresh_incident_card(deps: Deps, incident_id: str) -> None:
    record = deps.store.incidents.incident(incident_id)
    if record is None:
        return
    message = deps.renderer.message("incident", inc=incident_view(deps, record))
    show(deps, incident_card(record.id), record.channel, message)


def open_incidents_message(deps: Deps) -> Any:
    rows = [incident_view(deps, r) for r in deps.store.incidents.open_incidents()]
    return deps.renderer.message("incidents", incidents=rows)
