"""Incidents: a Cloud Monitoring alert in, a decision by the runbook's table, an automatic
emergency rollback when the numbers say so, and a postmortem draft once traffic is safe.

Lifecycle: open -> mitigated (traffic safe) -> resolved (alert closed, or a person says so).
The judgement always uses fresh numbers for the revision serving now, not only the alert's.
"""

from bot.ops.incidents.intake import MONITORING, AlertOutcome, receive_alert
from bot.ops.incidents.judging import judge_incident, next_check, tick
from bot.ops.incidents.lifecycle import (
    acknowledge,
    on_operation_finished,
    post_postmortem,
    request_rollback_from_card,
    resolve,
    start_observing,
)
from bot.ops.incidents.view import incident_view, open_incidents_message, refresh_incident_card

__all__ = [
    "MONITORING",
    "AlertOutcome",
    "acknowledge",
    "incident_view",
    "judge_incident",
    "next_check",
    "on_operation_finished",
    "open_incidents_message",
    "post_postmortem",
    "receive_alert",
    "refresh_incident_card",
    "request_rollback_from_card",
    "resolve",
    "start_observing",
    "tick",
]
