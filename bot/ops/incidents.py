"""Incidents: a Cloud Monitoring alert in, a decision by the runbook's table, an automatic
emergency rollback when the numbers say so, and a postmortem draft once traffic is safe.

Lifecycle: open -> mitigated (traffic safe) -> resolved (alert closed, or a person says so).
The judgement always uses fresh numbers for the revision serving now, not only the alert's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.config import ServiceConfig
from bot.gcp.alerts import Incident
from bot.ops.cards import incident_card, share_file, show
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import UserError
from bot.ops.preemption import request_rollback
from bot.ops.rollback import RollbackRequest, authorize_request
from bot.policy.gates import Judgement, Observation, Verdict, after_observation, judge
from bot.policy.targets import current_revision
from bot.ports import CloudRunError, MetricsError, ServiceRef
from bot.store import IncidentRecord, Operation

log = logging.getLogger("runback.incidents")

MONITORING = "cloud-monitoring"


@dataclass(frozen=True)
class AlertOutcome:
    incident_id: str
    status: str  # created | duplicate | closed | unknown | unmanaged | unidentified
    judge: bool  # a judgement should follow (run it off the request thread)


# -- alerts in ----------------------------------------------------------------------------------


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


# -- judging ------------------------------------------------------------------------------------


def judge_incident(deps: Deps, incident_id: str) -> str | None:
    """Judge the serving revision now; returns a rollback operation to run, if one was started."""
    record = deps.store.incident(incident_id)
    if record is None or record.state != "open" or not record.managed:
        return None
    service = deps.config.service(record.service)
    assert service is not None
    ref = ServiceRef(service.project, service.region, service.name)
    now = deps.clock.now()
    judgement, revision = _observe(deps, ref, service.health_path)
    verdict = judgement.verdict
    if record.observe_until is not None:
        since = record.observe_until - timedelta(minutes=deps.config.thresholds.observe_minutes)
        verdict = after_observation(deps.config.thresholds, judgement, since, now)
    _record_judgement(deps, record, judgement, verdict, revision)
    operation_id = _act(deps, record, verdict, revision, service.auto_rollback)
    refresh_incident_card(deps, record.id)
    return operation_id


def _observe(deps: Deps, ref: ServiceRef, health_path: str) -> tuple[Judgement, str]:
    thresholds = deps.config.thresholds
    try:
        state = deps.cloudrun.get_service(ref)
    except CloudRunError:
        return judge(thresholds, Observation(None, None, None, None)), ""
    revision = current_revision(state.serving()) or ""
    end = deps.clock.now()
    start = end - timedelta(minutes=thresholds.window_minutes)
    try:
        metrics = deps.metrics.revision_metrics(ref, revision, start, end)
        requests, errors, p95 = metrics.requests, metrics.errors, metrics.p95_ms
    except MetricsError as error:
        log.warning("Monitoring unreadable for %s: %s", ref.name, error)
        requests = errors = p95 = None
    probe = deps.probe.get(
        state.uri.rstrip("/") + health_path, deps.config.rollback.health_check_timeout_s
    )
    return judge(thresholds, Observation(probe.ok, requests, errors, p95)), revision


def _record_judgement(
    deps: Deps, record: IncidentRecord, judgement: Judgement, verdict: Verdict, revision: str
) -> None:
    now = deps.clock.now()
    seen = judgement.observation
    numbers = {
        "at": now.isoformat(),
        "revision": revision,
        "verdict": "observe_expired" if verdict != judgement.verdict else str(verdict),
        "reasons": [str(r) for r in judgement.reasons],
        "requests": seen.requests,
        "errors": seen.errors,
        "error_rate": seen.error_rate,
        "p95_ms": seen.p95_ms,
        "healthz_ok": seen.healthz_ok,
        "window_minutes": deps.config.thresholds.window_minutes,
    }
    judgements = [*record.data.get("judgements", []), numbers][-50:]
    deps.store.update_incident(
        record.id,
        now,
        verdict=str(verdict),
        revision=record.revision or revision,
        data={**record.data, "judgements": judgements},
    )
    deps.store.add_event(record.id, now, "judged", actor=BOT_ACTOR, **numbers)
    deps.audit(
        BOT_ACTOR,
        "incident.judged",
        str(verdict),
        service=record.service,
        incident=record.id,
        **numbers,  # includes the revision judged
    )


def _act(
    deps: Deps, record: IncidentRecord, verdict: Verdict, revision: str, automatic: bool
) -> str | None:
    now = deps.clock.now()
    if verdict is Verdict.ROLLBACK:
        deps.store.update_incident(record.id, now, observe_until=None)
        return _automatic_rollback(deps, record, revision) if automatic else None
    if verdict is Verdict.OBSERVE and record.observe_until is None:
        until = now + timedelta(minutes=deps.config.thresholds.observe_minutes)
        deps.store.update_incident(record.id, now, observe_until=until)
        deps.store.add_event(
            record.id, now, "observe_started", actor=BOT_ACTOR, until=until.isoformat()
        )
    elif verdict is Verdict.PROCEED:
        deps.store.update_incident(record.id, now, observe_until=None)
    return None


def _automatic_rollback(deps: Deps, record: IncidentRecord, revision: str) -> str | None:
    """The emergency rollback, run by Runback itself on behalf of the on-call policy."""
    request = RollbackRequest(
        service=record.service,
        revision=None,
        user=BOT_ACTOR,
        channel=record.channel or deps.config.channels.incidents.id,
        reason=deps.renderer.text("incident.rollback_reason", id=record.id, revision=revision),
        automatic=True,
    )
    now = deps.clock.now()
    try:
        operation = request_rollback(deps, request)
    except UserError as error:
        holder = deps.store.lock_holder(record.service)
        deps.store.update_incident(
            record.id,
            now,
            operation_id=holder.operation_id if holder else "",
            data={**record.data, "rollback_blocked": error.key},
        )
        deps.store.add_event(record.id, now, "rollback_blocked", actor=BOT_ACTOR, why=error.key)
        return None
    deps.store.update_incident(record.id, now, operation_id=operation.id)
    deps.store.add_event(
        record.id,
        now,
        "rollback_requested",
        actor=BOT_ACTOR,
        target=operation.to_revision,
        operation=operation.id,
    )
    return operation.id if operation.state == "approved" else None


ROLL_BACK_NOW = (str(Verdict.ROLLBACK), "observe_expired")


def request_rollback_from_card(deps: Deps, incident_id: str, user: str) -> Operation:
    """The incident card's Roll back, clicked by ``user`` (the approval matrix applies to them).

    When the runbook says "roll back now", only an emergency rollback will do: a click that
    would merely ask for a scheduled rollback (30 minutes of waiting for a second tech lead)
    is refused, so the emergency is never demoted and the on-call engineer's button stays.
    """
    record = deps.store.incident(incident_id)
    if record is None or record.state != "open":
        raise UserError("notice.incident_not_open", state=record.state if record else "?")
    reason = deps.renderer.text("incident.rollback_reason", id=record.id, revision=record.revision)
    request = RollbackRequest(
        service=record.service, revision=None, reason=reason, user=user, channel=record.channel
    )
    if record.verdict in ROLL_BACK_NOW:
        _service, emergency = authorize_request(deps, request)
        if not emergency:
            deps.audit(
                user,
                "rollback.refused",
                "refused",
                service=record.service,
                incident=record.id,
                why="emergency_needs_on_call",
            )
            raise UserError(
                "error.incident.emergency_needs_on_call",
                channel=deps.config.channels.incidents.name,
            )
    operation = request_rollback(deps, request)
    now = deps.clock.now()
    deps.store.update_incident(record.id, now, operation_id=operation.id)
    deps.store.add_event(
        record.id,
        now,
        "rollback_requested",
        actor=user,
        target=operation.to_revision,
        operation=operation.id,
    )
    refresh_incident_card(deps, record.id)
    return operation


def tick(deps: Deps) -> list[str]:
    """Re-judge incidents under observation when due; returns rollbacks to run."""
    started = []
    now = deps.clock.now()
    every = timedelta(seconds=deps.config.thresholds.observe_check_s)
    for record in deps.store.open_incidents():
        if record.state != "open" or record.observe_until is None:
            continue
        judgements = record.data.get("judgements") or [{}]
        last = judgements[-1].get("at")
        due = last is None or datetime.fromisoformat(last) + every <= now
        if due or now >= record.observe_until:
            operation_id = judge_incident(deps, record.id)
            if operation_id:
                started.append(operation_id)
    return started


# -- the rest of the lifecycle -----------------------------------------------------------------


def on_operation_finished(deps: Deps, operation: Operation) -> None:
    """A rollback of a service with an open incident mitigates it (whoever started it)."""
    safe = (operation.kind, operation.state) in (
        ("rollback", "succeeded"),
        ("release", "rolled_back"),
    )
    for record in deps.store.open_incidents(operation.service):
        if record.state != "open" or not record.managed:
            continue
        now = deps.clock.now()
        if safe:
            deps.store.update_incident(
                record.id,
                now,
                state="mitigated",
                mitigated_at=now,
                operation_id=record.operation_id or operation.id,
                observe_until=None,
            )
            deps.store.add_event(
                record.id, now, "mitigated", actor=operation.requested_by, operation=operation.id
            )
            deps.audit(
                BOT_ACTOR,
                "incident.mitigated",
                "ok",
                service=record.service,
                incident=record.id,
                operation_id=operation.id,
            )
            refresh_incident_card(deps, record.id)
            post_postmortem(deps, record.id)
        elif operation.state == "failed" and record.operation_id == operation.id:
            deps.store.add_event(
                record.id,
                now,
                "rollback_failed",
                actor=BOT_ACTOR,
                code=(operation.data.get("error") or {}).get("code", ""),
            )
            refresh_incident_card(deps, record.id)


def resolve(deps: Deps, incident_id: str, actor: str, how: str = "resolved") -> IncidentRecord:
    now = deps.clock.now()
    record = deps.store.incident(incident_id)
    assert record is not None
    record = deps.store.update_incident(
        incident_id,
        now,
        state="resolved",
        resolved_at=now,
        observe_until=None,
        data={**record.data, "resolved_by": actor, "resolved_how": how},
    )
    deps.store.add_event(incident_id, now, how, actor=actor)
    deps.audit(actor, f"incident.{how}", "ok", service=record.service, incident=incident_id)
    refresh_incident_card(deps, incident_id)
    return record


def acknowledge(deps: Deps, incident_id: str, user: str) -> IncidentRecord:
    record = _open_incident(deps, incident_id)
    now = deps.clock.now()
    acked = [*record.data.get("acknowledged_by", [])]
    if user not in acked:
        acked.append(user)
    record = deps.store.update_incident(
        record.id, now, data={**record.data, "acknowledged_by": acked}
    )
    deps.store.add_event(record.id, now, "acknowledged", actor=user)
    deps.audit(user, "incident.acknowledged", "ok", service=record.service, incident=record.id)
    refresh_incident_card(deps, record.id)
    return record


def start_observing(deps: Deps, incident_id: str, user: str) -> IncidentRecord:
    record = _open_incident(deps, incident_id)
    if record.state != "open":
        raise UserError("notice.incident_not_open", state=record.state)
    now = deps.clock.now()
    until = now + timedelta(minutes=deps.config.thresholds.observe_minutes)
    record = deps.store.update_incident(record.id, now, observe_until=until, verdict="observe")
    deps.store.add_event(record.id, now, "observe_started", actor=user, until=until.isoformat())
    deps.audit(user, "incident.observe", "ok", service=record.service, incident=record.id)
    refresh_incident_card(deps, record.id)
    return record


def _open_incident(deps: Deps, incident_id: str) -> IncidentRecord:
    record = deps.store.incident(incident_id)
    if record is None:
        raise UserError("notice.unknown_request")
    if record.state == "resolved":
        raise UserError("notice.incident_not_open", state=record.state)
    return record


# -- messages -----------------------------------------------------------------------------------


def incident_view(deps: Deps, record: IncidentRecord) -> dict[str, Any]:
    service = deps.config.service(record.service) if record.managed else None
    judgements = record.data.get("judgements") or []
    operation = deps.store.operation(record.operation_id) if record.operation_id else None
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
        "minutes_left": _minutes_left(deps, record.observe_until),
        "last": judgements[-1] if judgements else None,
        "auto_rollback": bool(service and service.auto_rollback),
        "acknowledged_by": record.data.get("acknowledged_by", []),
        "operation": _operation_view(operation),
        "resolved_by": record.data.get("resolved_by", ""),
        "resolved_how": record.data.get("resolved_how", ""),
        "thresholds": deps.config.thresholds.model_dump(),
        "measured": measured(record.alert or {}),
        "ratio": _is_ratio(record.alert or {}),
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


def _minutes_left(deps: Deps, until: datetime | None) -> int | None:
    """The countdown shown while observing (refreshed at every re-judgement)."""
    if until is None:
        return None
    return max(math.ceil((until - deps.clock.now()).total_seconds() / 60), 0)


def _operation_view(operation: Operation | None) -> dict[str, Any] | None:
    """The rollback that answered this incident, as the card keeps showing it once resolved."""
    if operation is None:
        return None
    released = operation.kind == "release"  # a release rolled back goes to blue, not green
    return {
        "id": operation.id,
        "kind": operation.kind,
        "state": operation.state,
        "to_revision": operation.from_revision if released else operation.to_revision,
        "requested_by": operation.requested_by,
        "automatic": bool((operation.data or {}).get("automatic")),
        "finished_at": operation.finished_at,
        "succeeded": operation.state in ("succeeded", "rolled_back"),
    }


BLOCKED_KEYS = (
    "error.busy",
    "error.cloudrun_unavailable",
    "error.target.no_previous",
    "error.target.not_serving",
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
        return {"action": "unmanaged", "buttons": [], "blocked": ""}
    if record.state in ("mitigated", "resolved"):
        buttons = ["resolve"] if record.state == "mitigated" else []
        return {"action": record.state, "buttons": buttons, "blocked": ""}
    if operation is not None and operation.state == "awaiting_approval":
        action = "rollback_pending"
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
    buttons = [] if moving else ["roll_back"]
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
    record = deps.store.incident(incident_id)
    if record is None:
        return
    message = deps.renderer.message("incident", inc=incident_view(deps, record))
    show(deps, incident_card(record.id), record.channel, message)


def post_postmortem(deps: Deps, incident_id: str) -> bool:
    """Post the postmortem draft in the incident's thread, exactly once per incident."""
    if not deps.store.claim_postmortem(incident_id):
        return False
    from bot.ops.postmortem_context import build_postmortem

    record = deps.store.incident(incident_id)
    assert record is not None
    document = deps.renderer.document("postmortem", **build_postmortem(deps, record))
    title = deps.renderer.text("incident.postmortem_title", service=record.service, id=record.id)
    share_file(
        deps,
        record.channel,
        f"postmortem-{record.service}-{record.id}.md",
        document,
        title,
        deps.renderer.text("incident.postmortem_posted"),
        thread_of=incident_card(record.id),
    )
    deps.store.update_incident(record.id, deps.clock.now(), postmortem="posted")
    deps.store.add_event(record.id, deps.clock.now(), "postmortem_posted", actor=BOT_ACTOR)
    return True


def open_incidents_message(deps: Deps) -> Any:
    rows = [incident_view(deps, r) for r in deps.store.open_incidents()]
    return deps.renderer.message("incidents", incidents=rows)
