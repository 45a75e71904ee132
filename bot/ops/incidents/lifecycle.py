"""An incident's life after the alert: mitigation, people's buttons, resolution, the postmortem."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.ops.cards import incident_card, share_file
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import UserError
from bot.ops.flags.states import FlagData
from bot.ops.incidents.view import ROLL_BACK_NOW, refresh_incident_card
from bot.ops.preemption import request_rollback
from bot.ops.release.states import ReleaseData
from bot.ops.restore.states import RestoreData
from bot.ops.rollback import RollbackRequest, authorize_request, rollback_data
from bot.ports import MetricsError
from bot.store import IncidentRecord, Operation

log = logging.getLogger("runback.incidents")

# How long after a whole window past mitigation the numbers may still show up (Cloud Run's are
# visible up to ~3 minutes late); then the draft keeps its "After mitigation" unknown.
AFTER_GIVE_UP = timedelta(minutes=15)


def request_rollback_from_card(deps: Deps, incident_id: str, user: str) -> Operation:
    """The incident card's Roll back, clicked by ``user`` (the approval matrix applies to them).

    When the runbook says "roll back now", only an emergency rollback will do: a click that
    would merely ask for a scheduled rollback (30 minutes of waiting for a second tech lead)
    is refused, so the emergency is never demoted and the on-call engineer's button stays.
    """
    record = deps.store.incidents.incident(incident_id)
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
    deps.store.incidents.update_incident(record.id, now, operation_id=operation.id)
    deps.store.journal.add_event(
        record.id,
        now,
        "rollback_requested",
        actor=user,
        target=operation.to_revision,
        operation=operation.id,
    )
    refresh_incident_card(deps, record.id)
    return operation


def on_operation_finished(deps: Deps, operation: Operation) -> None:
    """A rollback of a service with an open incident mitigates it (whoever started it)."""
    safe = moved_traffic_back(operation)
    for record in deps.store.incidents.open_incidents(operation.service):
        if record.state != "open" or not record.managed:
            continue
        now = deps.clock.now()
        if safe:
            deps.store.incidents.update_incident(
                record.id,
                now,
                state="mitigated",
                mitigated_at=now,
                operation_id=record.operation_id or operation.id,
                observe_until=None,
            )
            deps.store.journal.add_event(
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
            deps.store.journal.add_event(
                record.id,
                now,
                "rollback_failed",
                actor=BOT_ACTOR,
                code=_failure_code(operation),
            )
            refresh_incident_card(deps, record.id)
        elif operation.state in ("rejected", "expired") and record.operation_id == operation.id:
            # the incident's rollback request was declined (one past a destructive migration,
            # say): the card must not go on saying it waits, nor that a rollback was triggered
            deps.store.journal.add_event(
                record.id, now, f"rollback_{operation.state}", actor=BOT_ACTOR
            )
            refresh_incident_card(deps, record.id)


def _failure_code(operation: Operation) -> str:
    """Why the incident's rollback failed ("" when it is not a rollback, or no code was kept)."""
    error = rollback_data(operation).error
    return error.code if error else ""


def moved_traffic_back(operation: Operation) -> bool:
    """Traffic left a revision: a rollback that succeeded, or a release, flip or restore
    taken back (a restore: to the revision before it) once its new revision had traffic. One
    taken back before (a rejected migration, say) ends ``rolled_back`` with traffic where it
    was: that mitigates nothing."""
    if operation.kind == "rollback":
        return operation.state == "succeeded"
    if operation.state != "rolled_back":
        return False
    if operation.kind == "release":
        return ReleaseData.of(operation).step >= 0  # a canary step was started
    if operation.kind == "restore":
        return "shift" in RestoreData.of(operation).steps
    return operation.kind == "flag" and "shift" in FlagData.of(operation).steps


def resolve(deps: Deps, incident_id: str, actor: str, how: str = "resolved") -> IncidentRecord:
    now = deps.clock.now()
    record = deps.store.incidents.incident(incident_id)
    assert record is not None
    record = deps.store.incidents.update_incident(
        incident_id,
        now,
        state="resolved",
        resolved_at=now,
        observe_until=None,
        data={**record.data, "resolved_by": actor, "resolved_how": how},
    )
    deps.store.journal.add_event(incident_id, now, how, actor=actor)
    deps.audit(actor, f"incident.{how}", "ok", service=record.service, incident=incident_id)
    refresh_incident_card(deps, incident_id)
    return record


def acknowledge(deps: Deps, incident_id: str, user: str) -> IncidentRecord:
    record = _open_incident(deps, incident_id)
    now = deps.clock.now()
    acked = [*record.data.get("acknowledged_by", [])]
    if user not in acked:
        acked.append(user)
    record = deps.store.incidents.update_incident(
        record.id, now, data={**record.data, "acknowledged_by": acked}
    )
    deps.store.journal.add_event(record.id, now, "acknowledged", actor=user)
    deps.audit(user, "incident.acknowledged", "ok", service=record.service, incident=record.id)
    refresh_incident_card(deps, record.id)
    return record


def start_observing(deps: Deps, incident_id: str, user: str) -> IncidentRecord:
    record = _open_incident(deps, incident_id)
    if record.state != "open":
        raise UserError("notice.incident_not_open", state=record.state)
    now = deps.clock.now()
    # data time, as a judgement's own observation: from the newest minute judged so far
    judged = (record.data.get("judged") or {}).get("until")
    since = datetime.fromisoformat(judged) if judged else now
    until = since + timedelta(minutes=deps.config.thresholds.observe_minutes)
    record = deps.store.incidents.update_incident(
        record.id,
        now,
        observe_until=until,
        verdict="observe",
        data={**record.data, "observing_since": since.isoformat()},
    )
    deps.store.journal.add_event(
        record.id, now, "observe_started", actor=user, until=until.isoformat()
    )
    deps.audit(user, "incident.observe", "ok", service=record.service, incident=record.id)
    refresh_incident_card(deps, record.id)
    return record


def _open_incident(deps: Deps, incident_id: str) -> IncidentRecord:
    record = deps.store.incidents.incident(incident_id)
    if record is None:
        raise UserError("notice.unknown_request")
    if record.state == "resolved":
        raise UserError("notice.incident_not_open", state=record.state)
    return record


def post_postmortem(deps: Deps, incident_id: str) -> bool:
    """Post the postmortem draft in the incident's thread, exactly once per incident."""
    if not deps.store.incidents.claim_postmortem(incident_id):
        return False
    record = deps.store.incidents.incident(incident_id)
    assert record is not None
    _share_postmortem(deps, record, "incident.postmortem_posted")
    deps.store.incidents.update_incident(record.id, deps.clock.now(), postmortem="posted")
    deps.store.journal.add_event(record.id, deps.clock.now(), "postmortem_posted", actor=BOT_ACTOR)
    return True


def follow_up_postmortem(deps: Deps, incident_id: str) -> bool:
    """The draft is posted at mitigation, before Monitoring shows a minute after it. Once it
    shows a whole judgement window after mitigation, post the draft again with its "After
    mitigation" column filled (exactly once); give up quietly when nothing shows in time."""
    record = deps.store.incidents.incident(incident_id)
    if record is None or record.postmortem != "posted" or record.mitigated_at is None:
        return False
    window = timedelta(minutes=deps.config.thresholds.window_minutes)
    now = deps.clock.now()
    if now < record.mitigated_at + window:
        return False
    after = metrics_after_mitigation(deps, record, window)
    if after is None:
        if now > record.mitigated_at + window + AFTER_GIVE_UP:
            deps.store.incidents.claim_postmortem(record.id, "posted", "no_after")
        return False
    if not deps.store.incidents.claim_postmortem(record.id, "posted", "updating"):
        return False
    record = deps.store.incidents.update_incident(
        record.id, now, data={**record.data, "metrics_after": after}
    )
    _share_postmortem(deps, record, "incident.postmortem_updated")
    deps.store.incidents.update_incident(record.id, deps.clock.now(), postmortem="updated")
    return True


def metrics_after_mitigation(
    deps: Deps, record: IncidentRecord, window: timedelta
) -> dict[str, Any] | None:
    """The safe revision's numbers over the first whole window after mitigation, once
    Monitoring shows all of it; None before (or when it cannot be read)."""
    operation = (
        deps.store.operations.operation(record.operation_id) if record.operation_id else None
    )
    service = deps.config.service(record.service)
    if operation is None or service is None or record.mitigated_at is None:
        return None
    # a release or a flip taken back went to the revision before it
    revision = (
        operation.from_revision
        if operation.kind in ("release", "flag")
        else (operation.to_revision)
    )
    ref = deps.service_ref(service)
    start = record.mitigated_at
    try:
        visible = deps.metrics.visible_until(ref, revision, start, deps.clock.now())
        if visible is None or visible < start + window:
            return None
        metrics = deps.metrics.revision_metrics(ref, revision, start, start + window)
    except MetricsError as error:
        log.warning("no metrics after mitigation for %s: %s", record.id, error)
        return None
    return {
        "revision": revision,
        "requests": metrics.requests,
        "errors": metrics.errors,
        "error_rate": metrics.error_rate,
        "p95_ms": metrics.p95_ms,
        "window_minutes": window.total_seconds() / 60,
    }


def _share_postmortem(deps: Deps, record: IncidentRecord, comment: str) -> None:
    from bot.ops.postmortem_context import build_postmortem

    document = deps.renderer.document("postmortem", **build_postmortem(deps, record))
    title = deps.renderer.text("incident.postmortem_title", service=record.service, id=record.id)
    share_file(
        deps,
        record.channel,
        f"postmortem-{record.service}-{record.id}.md",
        document,
        title,
        deps.renderer.text(comment),
        thread_of=incident_card(record.id),
    )
