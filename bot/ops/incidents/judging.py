"""Judging an incident with fresh numbers, and the automatic emergency rollback it may call for.

Every judgement is made by bot/ops/metrics_window.py: the serving revision's freshest minutes,
its health, and the alert's own measurement as evidence. A check that finds nothing new (no
minute Monitoring did not show before) records nothing; the card says it waits for the next
minute. An observation ends by data time: once Monitoring shows the minutes up to its end.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import UserError
from bot.ops.health import probe_health
from bot.ops.incidents.lifecycle import follow_up_postmortem
from bot.ops.incidents.view import measured, refresh_incident_card
from bot.ops.metrics_window import Decision, decide, unreadable
from bot.ops.preemption import request_rollback
from bot.ops.rollback import RollbackData, RollbackRequest
from bot.policy.evidence import AlertEvidence, alert_evidence
from bot.policy.gates import Verdict
from bot.policy.targets import current_revision
from bot.ports import CloudRunError, ServiceRef
from bot.store import IncidentRecord

log = logging.getLogger("runback.incidents")

# How long an incident with nothing new to judge is checked again before Runback says so and
# stops asking (a revision that serves nothing has no minutes at all).
WAITING_LIMIT = timedelta(minutes=10)
# a check claims the incident again after a write that was not a check (the card's ts), this often
CLAIM_TRIES = 3


def judge_incident(deps: Deps, incident_id: str) -> str | None:
    """Judge the serving revision now; returns a rollback operation to run, if one was started."""
    now = deps.clock.now()
    record = _claim(deps, incident_id, now)
    if record is None:
        return None
    service = deps.config.service(record.service)
    assert service is not None
    ref = ServiceRef(service.project, service.region, service.name)
    try:
        state = deps.cloudrun.get_service(ref)
    except CloudRunError as error:
        log.warning("Cloud Run unreadable for %s: %s", ref.name, error)
        decision = unreadable(deps, now, _observing_since(record))
        record = _record_judgement(deps, record, decision, "")
        refresh_incident_card(deps, record.id)
        return None
    revision = current_revision(state.serving()) or ""
    decision = decide(
        deps,
        ref,
        revision,
        lambda: probe_health(deps, service, state.uri)[1],
        not_before=None,
        judged_until=_judged_until(record, revision),
        observing=_observing_since(record),
        alert=_alert_evidence(record, revision),
    )
    if decision.waiting:
        _note_check(deps, record, now, waiting=_waiting(record, decision))
        refresh_incident_card(deps, record.id)
        return None
    record = _record_judgement(deps, record, decision, revision)
    operation_id = _act(deps, record, decision, revision, service.auto_rollback)
    refresh_incident_card(deps, record.id)
    return operation_id


def _claim(deps: Deps, incident_id: str, now: datetime) -> IncidentRecord | None:
    """This check, claimed (compare-and-set on ``updated_at``): another check that read the
    incident at once finds it moved, one that reads it meanwhile finds it checked just now (not
    due). A write that is not a check (the card's ``message_ts``, stored as the new card is
    posted) does not take the check away: claimed again on what the incident is now. None when
    the incident is not to be judged, or another check has it."""
    seen_check: object = None
    for attempt in range(CLAIM_TRIES):
        record = deps.store.incidents.incident(incident_id)
        if record is None or record.state != "open" or not record.managed:
            return None
        if attempt and record.data.get("checked_at") != seen_check:
            return None  # another check claimed it
        seen_check = record.data.get("checked_at")
        claimed = {**record.data, "checked_at": now.isoformat()}
        if deps.store.incidents.claim_incident(record.id, record.updated_at, now, claimed):
            return deps.store.incidents.incident(incident_id) or record
    return None


def _judged_until(record: IncidentRecord, revision: str) -> datetime | None:
    judged = record.data.get("judged") or {}
    if judged.get("revision") != revision or not judged.get("until"):
        return None
    return datetime.fromisoformat(judged["until"])


def _observing_since(record: IncidentRecord) -> datetime | None:
    since = record.data.get("observing_since")
    return datetime.fromisoformat(since) if since and record.observe_until else None


def _alert_evidence(record: IncidentRecord, revision: str) -> AlertEvidence | None:
    """The alert's own measurement, when it is about the revision judged (a policy that
    aggregated the revision away may be about any)."""
    alert = record.alert or {}
    if record.revision and revision and record.revision != revision:
        return None
    return alert_evidence(
        measured(alert),
        str(alert.get("observed_value", "")),
        str(alert.get("threshold_value", "")),
        record.started_at or record.received_at,
        alert.get("window_s"),
    )


def _waiting(record: IncidentRecord, decision: Decision) -> dict[str, Any]:
    """The card's "waiting for Monitoring's next minute", kept since it began; after
    WAITING_LIMIT Runback stops asking and says a person should look."""
    facts = decision.waiting_facts()
    since = (record.data.get("waiting") or {}).get("since", facts["since"])
    gave_up = decision.now - datetime.fromisoformat(since) >= WAITING_LIMIT
    return {**facts, "since": since, "gave_up": gave_up}


def _note_check(
    deps: Deps, record: IncidentRecord, now: datetime, waiting: dict[str, Any] | None
) -> None:
    """A check that judged nothing: when it was (the next is due from it), and what it waits for."""
    data = {**record.data, "checked_at": now.isoformat()}
    if waiting is not None:
        data["waiting"] = waiting
    deps.store.incidents.update_incident(record.id, now, data=data)


def _record_judgement(
    deps: Deps, record: IncidentRecord, decision: Decision, revision: str
) -> IncidentRecord:
    assert decision.judgement is not None and decision.verdict is not None
    now = decision.now
    expired = decision.verdict is Verdict.ROLLBACK and decision.judgement.verdict is not (
        Verdict.ROLLBACK
    )
    numbers = {
        **decision.facts(),
        "revision": revision,
        "verdict": "observe_expired" if expired else str(decision.verdict),
    }
    judgements = [*record.data.get("judgements", []), numbers][-50:]
    since = decision.observing_since
    window = decision.reading.window
    judged = {"revision": revision, "until": window.end.isoformat()} if window else None
    data = {
        **record.data,
        "judgements": judgements,
        "checked_at": now.isoformat(),
        "waiting": None,
        "judged": judged or record.data.get("judged"),
        "observing_since": since.isoformat() if since else None,
    }
    record = deps.store.incidents.update_incident(
        record.id,
        now,
        verdict=str(decision.verdict),
        revision=record.revision or revision,
        data=data,
    )
    deps.store.journal.add_event(record.id, now, "judged", actor=BOT_ACTOR, **numbers)
    deps.audit(
        BOT_ACTOR,
        "incident.judged",
        str(decision.verdict),
        service=record.service,
        incident=record.id,
        **numbers,  # includes the revision judged
    )
    return record


def _act(
    deps: Deps, record: IncidentRecord, decision: Decision, revision: str, automatic: bool
) -> str | None:
    now = deps.clock.now()
    verdict = decision.verdict
    if verdict is Verdict.ROLLBACK:
        deps.store.incidents.update_incident(record.id, now, observe_until=None)
        return _automatic_rollback(deps, record, revision) if automatic else None
    since = decision.observing_since
    if verdict is Verdict.OBSERVE and since is not None and record.observe_until is None:
        # the observation covers Monitoring's minutes from the newest it showed (data time)
        until = since + timedelta(minutes=deps.config.thresholds.observe_minutes)
        deps.store.incidents.update_incident(record.id, now, observe_until=until)
        deps.store.journal.add_event(
            record.id, now, "observe_started", actor=BOT_ACTOR, until=until.isoformat()
        )
    elif verdict is Verdict.PROCEED:
        deps.store.incidents.update_incident(record.id, now, observe_until=None)
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
        holder = deps.store.operations.lock_holder(record.service)
        fresh = (
            deps.store.incidents.incident(record.id) or record
        )  # with the judgement just recorded
        blocked = {"rollback_blocked": error.key, "rollback_blocked_facts": _facts(error)}
        deps.store.incidents.update_incident(
            record.id,
            now,
            operation_id=holder.operation_id if holder else "",
            data={**fresh.data, **blocked},
        )
        deps.store.journal.add_event(
            record.id, now, "rollback_blocked", actor=BOT_ACTOR, why=error.key
        )
        return None
    deps.store.incidents.update_incident(record.id, now, operation_id=operation.id)
    guard = RollbackData.of(operation).migration_guard
    deps.store.journal.add_event(
        record.id,
        now,
        # never silently past a destructive migration: asked, and the card says so
        "rollback_asked_past_migration" if guard else "rollback_requested",
        actor=BOT_ACTOR,
        target=operation.to_revision,
        operation=operation.id,
        **({"past": [c.revision for c in guard]} if guard else {}),
    )
    return operation.id if operation.state == "approved" else None


def _facts(error: UserError) -> dict[str, object]:
    """What the card needs to say why no rollback started, and what to type instead."""
    context = error.context
    return {
        "rolled_back": list(context.get("rolled_back") or []),
        "suggestion": str(context.get("suggestion") or context.get("alternative") or ""),
    }


def next_check(deps: Deps, record: IncidentRecord) -> datetime | None:
    """When an open incident is next checked: every ``observe_check_s`` while it is observed or
    waits for Monitoring's next minute (at most WAITING_LIMIT); None when nothing is due."""
    if record.state != "open" or not record.managed:
        return None
    waiting = record.data.get("waiting") or {}
    if record.observe_until is None and (not waiting or waiting.get("gave_up")):
        return None
    checked = record.data.get("checked_at")
    if not checked:
        return deps.clock.now()
    every = timedelta(seconds=deps.config.thresholds.observe_check_s)
    return datetime.fromisoformat(checked) + every


def tick(deps: Deps) -> list[str]:
    """Check incidents under observation, or waiting for Monitoring, when due; returns the
    rollbacks to run."""
    started = []
    now = deps.clock.now()
    for record in deps.store.incidents.open_incidents():
        if record.state == "mitigated" and record.postmortem == "posted":
            follow_up_postmortem(deps, record.id)
        due = next_check(deps, record)
        if due is not None and due <= now:
            operation_id = judge_incident(deps, record.id)
            if operation_id:
                started.append(operation_id)
    return started
