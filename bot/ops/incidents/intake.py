"""Cloud Monitoring's alerts in: one incident per alert, matched to a managed service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.config import ServiceConfig
from bot.gcp.alerts import Incident
from bot.ops.context import Deps
from bot.ops.incidents.lifecycle import resolve
from bot.ops.incidents.view import refresh_incident_card

MONITORING = "cloud-monitoring"


@dataclass(frozen=True)
class AlertOutcome:
    incident_id: str
    status: str  # created | duplicate | closed | unknown | unmanaged | unidentified
    judge: bool  # a judgement should follow (run it off the request thread)


def receive_alert(deps: Deps, alert: Incident) -> AlertOutcome:
    if alert.state == "closed":
        return _close_from_alert(deps, alert)
    now = deps.clock.now()
    service = managed_service_of(deps, alert)
    record, created = deps.store.create_incident(
        now,
        external_id=alert.incident_id,
        service=alert.service_name,
        revision=alert.revision_name,
        managed=service is not None,
        state="open",
        alert=_alert_facts(alert),
        started_at=alert.started_at,
        channel=deps.config.channels.incidents.id,
    )
    if not created:
        return AlertOutcome(record.id, "duplicate", judge=False)
    deps.store.add_event(
        record.id,
        now,
        "alert_received",
        actor=MONITORING,
        observed=alert.observed_value,
        threshold=alert.threshold_value,
    )
    deps.audit(
        MONITORING,
        "incident.opened",
        "ok",
        service=record.service,
        revision=alert.revision_name,
        incident=record.id,
        alert=alert.incident_id,
        managed=record.managed,
    )
    refresh_incident_card(deps, record.id)
    if not record.service:
        return AlertOutcome(record.id, "unidentified", judge=False)
    if not record.managed:
        return AlertOutcome(record.id, "unmanaged", judge=False)
    return AlertOutcome(record.id, "created", judge=True)


def managed_service_of(deps: Deps, alert: Incident) -> ServiceConfig | None:
    """The app.yaml service the alert is about: same name, project and region. A service of the
    same name in another project or region is somebody else's."""
    service = deps.config.service(alert.service_name)
    if service is None:
        return None
    labels = alert.resource
    if (service.project, service.region) != (labels.project_id, labels.location):
        return None
    return service


def _alert_facts(alert: Incident) -> dict[str, Any]:
    return {
        "policy_name": alert.policy_name,
        "condition_name": alert.condition_name,
        "metric_type": alert.metric.type,
        "metric_name": alert.metric.display_name,
        "metric_labels": dict(alert.metric.labels),
        "observed_value": alert.observed_value,
        "threshold_value": alert.threshold_value,
        # what observed_value was measured over, and how long it held: the alert's evidence
        "window_s": alert.condition.window_s,
        "duration_s": alert.condition.duration_s,
        "url": alert.url,
        "summary": alert.summary,
        "documentation": alert.documentation,
        "project_id": alert.resource.project_id,
        "location": alert.resource.location,
    }


def _close_from_alert(deps: Deps, alert: Incident) -> AlertOutcome:
    record = deps.store.incident_by_alert(alert.incident_id)
    if record is None:
        return AlertOutcome("", "unknown", judge=False)
    if record.state != "resolved":
        resolve(deps, record.id, MONITORING, "alert_closed")
    return AlertOutcome(record.id, "closed", judge=False)
