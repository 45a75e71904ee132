"""Judging an incident with fresh numbers, and the automatic emergency rollback it may call for."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.config import ServiceConfig
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import UserError
from bot.ops.health import health_observation, probe_health
from bot.ops.incidents.lifecycle import follow_up_postmortem
from bot.ops.incidents.view import refresh_incident_card
from bot.ops.metrics_window import visible_numbers
from bot.ops.preemption import request_rollback
from bot.ops.rollback import RollbackRequest
from bot.policy.gates import Judgement, Observation, Verdict, after_observation, judge
from bot.policy.targets import current_revision
from bot.ports import CloudRunError, MetricsError, ServiceRef
from bot.store import IncidentRecord

log = logging.getLogger("runback.incidents")


def judge_incident(deps: Deps, incident_id: str) -> str | None:
    """Judge the serving revision now; returns a rollback operation to run, if one was started."""
    record = deps.store.incident(incident_id)
    if record is None or record.state != "open" or not record.managed:
        return None
    service = deps.config.service(record.service)
    assert service is not None
    ref = ServiceRef(service.project, service.region, service.name)
    now = deps.clock.now()
    since = None
    if record.observe_until is not None:
        since = record.observe_until - timedelta(minutes=deps.config.thresholds.observe_minutes)
    judgement, revision = _observe(deps, ref, service, since)
    verdict = judgement.verdict
    if since is not None:
        verdict = after_observation(deps.config.thresholds, judgement, since, now)
    _record_judgement(deps, record, judgement, verdict, revision)
    operation_id = _act(deps, record, verdict, revision, service.auto_rollback)
    refresh_incident_card(deps, record.id)
    return operation_id


def _observe(
    deps: Deps, ref: ServiceRef, service: ServiceConfig, since: datetime | None = None
) -> tuple[Judgement, str]:
    """Judge the serving revision on the newest visible minutes (while observing: only those
    since the observation began, the question being "is it still above?")."""
    thresholds = deps.config.thresholds
    try:
        state = deps.cloudrun.get_service(ref)
    except CloudRunError:
        return judge(thresholds, Observation(None, None, None, None)), ""
    revision = current_revision(state.serving()) or ""
    lookback = timedelta(minutes=thresholds.window_minutes)
    try:
        requests, errors, p95 = visible_numbers(
            deps, ref, revision, lookback=lookback, not_before=since
        )
    except MetricsError as error:
        log.warning("Monitoring unreadable for %s: %s", ref.name, error)
        requests = errors = p95 = None
    _, probe = probe_health(deps, service, state.uri)
    return judge(thresholds, health_observation(probe, requests, errors, p95)), revision


def _record_judgement(
    deps: Deps, record: IncidentRecord, judgement: Judgement, verdict: Verdict, revision: str
) -> None:
    now = deps.clock.now()
    numbers = {
        "at": now.isoformat(),
        "revision": revision,
        "verdict": "observe_expired" if verdict != judgement.verdict else str(verdict),
        **judgement.numbers(),
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
        fresh = deps.store.incident(record.id) or record  # with the judgement just recorded
        blocked = {"rollback_blocked": error.key, "rollback_blocked_facts": _facts(error)}
        deps.store.update_incident(
            record.id,
            now,
            operation_id=holder.operation_id if holder else "",
            data={**fresh.data, **blocked},
        )
        deps.store.add_event(record.id, now, "rollback_blocked", actor=BOT_ACTOR, why=error.key)
        return None
    deps.store.update_incident(record.id, now, operation_id=operation.id)
    guard = (operation.data or {}).get("migration_guard") or []
    deps.store.add_event(
        record.id,
        now,
        # never silently past a destructive migration: asked, and the card says so
        "rollback_asked_past_migration" if guard else "rollback_requested",
        actor=BOT_ACTOR,
        target=operation.to_revision,
        operation=operation.id,
        **({"past": [c["revision"] for c in guard]} if guard else {}),
    )
    return operation.id if operation.state == "approved" else None


def _facts(error: UserError) -> dict[str, object]:
    """What the card needs to say why no rollback started, and what to type instead."""
    context = error.context
    return {
        "rolled_back": list(context.get("rolled_back") or []),
        "suggestion": str(context.get("suggestion") or context.get("alternative") or ""),
    }


def tick(deps: Deps) -> list[str]:
    """Re-judge incidents under observation when due; returns rollbacks to run."""
    started = []
    now = deps.clock.now()
    every = timedelta(seconds=deps.config.thresholds.observe_check_s)
    for record in deps.store.open_incidents():
        if record.state == "mitigated" and record.postmortem == "posted":
            follow_up_postmortem(deps, record.id)
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
