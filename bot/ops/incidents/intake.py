"""Cloud Monitoring's alerts in: one incident per alert, matched to a managed service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.config import ServiceConfig
from bot.gcp.alerts import Incident
from bot.ops.context import Deps
from bot.ops.incidents.lifecycle import resolve
from bot.ops.incidents.view import refresh_incident_card
from bot.ports import CloudRunError, ServiceRef

MONITORING = "cloud-monitoring"


@dataclass(frozen=True)
class AlertOutcome:
    incident_id: str
    status: str  # created | duplicate | closed | unknown | unmanaged | unidentified | ambiguous
    judge: bool  # a judgement should follow (run it off the request thread)


def receive_alert(deps: Deps, alert: Incident) -> AlertOutcome:
    if alert.state == "closed":
        return _close_from_alert(deps, alert)
    now = deps.clock.now()
    service, identity = identify(deps, alert)
    record, created = deps.store.incidents.create_incident(
        now,
        external_id=alert.incident_id,
        service=alert.service_name,
        revision=alert.revision_name,
        managed=service is not None,
        state="open",
        alert={**_alert_facts(alert), "identity": identity},
        started_at=alert.started_at,
        channel=deps.config.channels.incidents.id,
    )
    if not created:
        return AlertOutcome(record.id, "duplicate", judge=False)
    deps.store.journal.add_event(
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
        return AlertOutcome(record.id, identity or "unmanaged", judge=False)
    return AlertOutcome(record.id, "created", judge=True)


def identify(deps: Deps, alert: Incident) -> tuple[ServiceConfig | None, str]:
    """The app.yaml service the alert is about, or why there is none ("unidentified": no
    service label; "unmanaged": not one of app.yaml's; "ambiguous": the name runs in several
    regions and the alert does not say which).

    Matched on project and service name, and on location when the alert carries it: labels
    the policy does not group by are aggregated away, often ``location`` (and ``project_id``,
    then the payload's ``scoping_project_id`` stands for it). Without a location, the service's
    name must not be ambiguous: the alert's revision must be one of the service's own, and
    without a revision no other region Runback knows may run a service of that name. Either
    way the judgement that follows reads the service's own numbers, never the alert's."""
    if not alert.service_name:
        return None, "unidentified"
    service = deps.config.service(alert.service_name)
    if service is None:
        return None, "unmanaged"
    project = alert.resource.project_id or alert.scoping_project_id
    if project != service.project:
        return None, "unmanaged"
    if alert.resource.location:
        return (service, "") if alert.resource.location == service.region else (None, "unmanaged")
    if _name_elsewhere(deps, service, alert.revision_name):
        return None, "ambiguous"
    return service, ""


def _name_elsewhere(deps: Deps, service: ServiceConfig, revision: str) -> bool:
    """Whether an alert without a location may be about a same-named service elsewhere."""
    ref = deps.service_ref(service)
    if revision:
        try:
            deps.cloudrun.get_revision(ref, revision)
        except CloudRunError as error:  # only "no such revision here" says it is elsewhere
            return error.reason == "not_found"
        return False
    regions = sorted({s.region for s in deps.config.services} - {service.region})
    for region in regions:
        try:
            deps.cloudrun.get_service(ServiceRef(service.project, region, service.name))
        except CloudRunError:
            continue
        return True
    return False


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
        "project_id": alert.resource.project_id or alert.scoping_project_id,
        "location": alert.resource.location,
    }


def _close_from_alert(deps: Deps, alert: Incident) -> AlertOutcome:
    record = deps.store.incidents.incident_by_alert(alert.incident_id)
    if record is None:
        return AlertOutcome("", "unknown", judge=False)
    if record.state != "resolved":
        resolve(deps, record.id, MONITORING, "alert_closed")
    return AlertOutcome(record.id, "closed", judge=False)
