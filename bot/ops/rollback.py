"""The rollback workflow, as a durable state machine.

States: awaiting_approval -> approved -> shifting -> verifying -> succeeded
        (or failed / rejected / expired / cancelled).

Each step commits its result before the next starts. A restarted bot resumes from the state it
finds: ``approved`` re-reads the service (and skips the PATCH if traffic is already there),
``shifting`` polls the long-running operation it recorded rather than sending a second PATCH,
``verifying`` probes again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NoReturn

from bot.config import Action, ServiceConfig
from bot.ops.approvals import claim_decision, request_approval
from bot.ops.cards import announce, card_view, refresh_card
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import UserError
from bot.policy.approvals import Decision, Verdict, decide_rollback
from bot.policy.revision_words import WordKind, read_revision_word
from bot.policy.targets import (
    TargetChoice,
    choose_target,
    current_revision,
    within_repeat_window,
)
from bot.ports import CloudRunError, EtagConflict, Revision, ServiceState, TrafficTarget
from bot.store import Operation

RUNNING_STATES = ("approved", "shifting", "verifying")


@dataclass(frozen=True)
class RollbackRequest:
    service: str
    revision: str | None
    reason: str
    user: str
    channel: str
    automatic: bool = False  # Runback itself, for an incident, on behalf of the on-call policy
    # Typed as `/rollback SERVICE [WORD] ...`: the reason's first word may name a revision (read
    # against the real revision list), and a repeat soon after a rollback asks first.
    from_command: bool = False


class RepeatNeedsConfirmation(Exception):
    """A `/rollback SERVICE` soon after a rollback of that service: nothing was changed, the
    user is asked to confirm the revision it would now pick. ``context`` is the plain data of
    that question (see ``rollback_repeat.json.j2``)."""

    def __init__(self, **context: Any) -> None:
        super().__init__("repeat_needs_confirmation")
        self.context = context


# -- request ----------------------------------------------------------------------------------


def authorize_request(deps: Deps, request: RollbackRequest) -> tuple[ServiceConfig, bool]:
    """The service asked for, and whether the request is an emergency (runs at once).

    Raises UserError, with nothing changed, on an unknown service or a refusal (audited).
    """
    service = _known_service(deps, request)
    emergency = request.automatic or _authorize(deps, request, service).verdict is Verdict.RUN
    return service, emergency


def create_rollback(
    deps: Deps, request: RollbackRequest, service: ServiceConfig, emergency: bool
) -> Operation:
    """Choose the target and record the rollback; returns the operation (approved or pending).

    Raises UserError, with nothing changed, on bad input or a busy service (audited).
    """
    _check_not_busy(deps, service.name, request.user, emergency)
    state, revisions = _read_service(deps, service, request.user)
    request = _read_revision_word(deps, request, service, revisions)
    choice, current = _choose_target(deps, request, service, state, revisions)
    if request.from_command and request.revision is None:
        _ask_if_repeated(deps, request, service, choice)
    operation = _create_operation(
        deps, request, service, emergency, state, revisions, choice, current
    )
    if emergency:
        deps.audit(
            request.user,
            "rollback.approved",
            "ok",
            service=service.name,
            revision=operation.to_revision,
            operation_id=operation.id,
            approval="incident_policy" if request.automatic else "self",
        )
    refresh_card(deps, operation.id)
    return deps.store.operation(operation.id) or operation


def _known_service(deps: Deps, request: RollbackRequest) -> ServiceConfig:
    service = deps.config.service(request.service)
    if service is None:
        deps.audit(
            request.user,
            "rollback.refused",
            "refused",
            service=request.service,
            why="unknown_service",
        )
        raise UserError(
            "error.unknown_service", service=request.service, known=deps.config.service_names
        )
    return service


def _authorize(deps: Deps, request: RollbackRequest, service: ServiceConfig) -> Decision:
    in_incidents = request.channel == deps.config.channels.incidents.id
    decision = decide_rollback(deps.config.approvals, deps.roles(request.user), in_incidents)
    if not decision.allowed:
        deps.audit(
            request.user,
            "rollback.refused",
            "refused",
            service=service.name,
            why=str(decision.refusal),
            required_role=str(decision.required_role),
        )
        raise UserError(
            f"error.refused.{decision.refusal}",
            action=str(decision.action),
            role=str(decision.required_role),
            channel=deps.config.channels.incidents.name,
        )
    return decision


def _check_not_busy(deps: Deps, service: str, user: str, emergency: bool) -> None:
    holder = deps.store.lock_holder(service)
    if holder is None or (emergency and holder.state == "awaiting_approval"):
        return
    deps.audit(
        user,
        "rollback.refused",
        "refused",
        service=service,
        why="busy",
        operation_id=holder.operation_id,
    )
    raise UserError("error.busy", service=service, holder=holder)


def _read_service(
    deps: Deps, service: ServiceConfig, user: str
) -> tuple[ServiceState, list[Revision]]:
    ref = deps.service_ref(service)
    try:
        return deps.cloudrun.get_service(ref), deps.cloudrun.list_revisions(ref)
    except CloudRunError as error:
        detail = error.detail or error.reason
        deps.audit(
            user,
            "rollback.refused",
            "refused",
            service=service.name,
            why="cloudrun_unavailable",
            detail=detail,
        )
        raise UserError("error.cloudrun_unavailable", service=service.name, detail=detail) from None


def _read_revision_word(
    deps: Deps, request: RollbackRequest, service: ServiceConfig, revisions: list[Revision]
) -> RollbackRequest:
    """A typed command's first reason word, read against the real revisions: the revision it
    names exactly (then the reason is the rest), the start of the reason, or bad input."""
    words = request.reason.split(maxsplit=1)
    if not request.from_command or request.revision or not words:
        return request
    names = [r.name for r in revisions]
    reading = read_revision_word(words[0], service.name, names, deps.config.service_names)
    if reading.kind is WordKind.REASON:
        return request
    if reading.kind is WordKind.REVISION:
        rest = words[1] if len(words) > 1 else ""
        return replace(request, revision=reading.revision, reason=rest)
    deps.audit(
        request.user,
        "rollback.refused",
        "refused",
        service=service.name,
        revision=words[0],
        why=str(reading.kind),
        suggestions=list(reading.suggestions),
    )
    raise UserError(
        f"error.target.{reading.kind}",
        service=service.name,
        revision=words[0],
        owner=reading.owner,
        suggestions=list(reading.suggestions),
        digits=words[0].isdigit(),
        recent=_recent(deps, revisions, {}),
    )


def _choose_target(
    deps: Deps,
    request: RollbackRequest,
    service: ServiceConfig,
    state: ServiceState,
    revisions: list[Revision],
) -> tuple[TargetChoice, str | None]:
    serving = state.serving()
    choice = _choice(deps, service.name, revisions, serving, request.revision, request.automatic)
    if choice.revision is None or choice.problem is not None:
        deps.audit(
            request.user,
            "rollback.refused",
            "refused",
            service=service.name,
            revision=request.revision or (choice.revision.name if choice.revision else ""),
            why=str(choice.problem),
        )
        raise UserError(
            f"error.target.{choice.problem}",
            service=service.name,
            revision=request.revision or (choice.revision.name if choice.revision else ""),
            why=choice.revision.ready_message if choice.revision else "",
            alternative=choice.alternative.name if choice.alternative else "",
            rolled_back=list(choice.rolled_back),
            recent=_recent(deps, revisions, serving),
        )
    return choice, current_revision(serving)


def _choice(
    deps: Deps,
    service: str,
    revisions: list[Revision],
    serving: dict[str, int],
    named: str | None,
    automatic: bool,
    also_bad: frozenset[str] = frozenset(),
) -> TargetChoice:
    """A person is told when the revision to go back to is not ready; Runback acting alone
    for an incident goes on to the next ready one (and the card says so)."""
    return choose_target(
        revisions,
        serving,
        deps.store.served_revisions(service),
        deps.store.rolled_back_from(service) | also_bad,
        named,
        skip_not_ready=automatic,
    )


# -- a second `/rollback SERVICE` soon after one --------------------------------------------------


def _ask_if_repeated(
    deps: Deps,
    request: RollbackRequest,
    service: ServiceConfig,
    choice: TargetChoice,
) -> None:
    """Another rollback without a revision would go one more revision back: ask first. (A
    retry of one that failed before moving traffic picks the same target: no question.)"""
    previous = deps.store.latest_operation(service.name, "rollback")
    window = deps.config.rollback.repeat_window_minutes
    assert choice.revision is not None
    if previous is None or previous.state not in ("succeeded", "failed"):
        return
    if not within_repeat_window(previous.finished_at, deps.clock.now(), window):
        return
    if choice.revision.name == previous.to_revision:
        return
    deps.audit(
        request.user,
        "rollback.confirmation_requested",
        "pending",
        service=service.name,
        revision=choice.revision.name,
        after_operation=previous.id,
    )
    raise RepeatNeedsConfirmation(
        service=service.name,
        user=request.user,
        reason=request.reason,
        previous=_previous_view(previous),
        target=_revision_view(deps, choice.revision),
        window_minutes=window,
    )


def _previous_view(operation: Operation) -> dict[str, Any]:
    return {
        "id": operation.id,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "automatic": bool((operation.data or {}).get("automatic")),
        "finished_at": operation.finished_at,
        "from_revision": operation.from_revision,
        "to_revision": operation.to_revision,
    }


def check_repeat_still_current(
    deps: Deps, service_name: str, revision: str, after_operation: str, user: str
) -> None:
    """At the confirm click: the revision asked about must still be the one a rollback would
    pick, and no other rollback may have run since. Raises UserError (audited) otherwise."""
    service = deps.config.service(service_name)
    latest = deps.store.latest_operation(service_name, "rollback")
    if service is None or latest is None or latest.id != after_operation:
        _stale_confirmation(deps, user, service_name, revision, latest)
    assert service is not None
    state, revisions = _read_service(deps, service, user)
    choice = _choice(deps, service_name, revisions, state.serving(), None, automatic=False)
    if choice.problem is not None or choice.revision is None or choice.revision.name != revision:
        _stale_confirmation(deps, user, service_name, revision, latest, choice)


def _stale_confirmation(
    deps: Deps,
    user: str,
    service: str,
    revision: str,
    latest: Operation | None,
    choice: TargetChoice | None = None,
) -> NoReturn:
    deps.audit(user, "rollback.refused", "refused", service=service, revision=revision, why="stale")
    now_pick = choice.revision.name if choice and choice.revision and not choice.problem else ""
    raise UserError(
        "notice.repeat_stale",
        service=service,
        revision=revision,
        latest=_previous_view(latest) if latest else None,
        now_pick=now_pick,
    )


def _recent(deps: Deps, revisions: list[Revision], serving: dict[str, int]) -> list[dict[str, Any]]:
    return [_revision_view(deps, r, serving.get(r.name, 0)) for r in revisions[:6]]


def _revision_view(deps: Deps, revision: Revision | None, percent: int = 0) -> dict[str, Any]:
    if revision is None:
        return {"revision": "", "image": "", "age_s": None, "ready": False, "percent": 0}
    age = (deps.clock.now() - revision.created).total_seconds()
    return {
        "revision": revision.name,
        "image": revision.image,
        "age_s": age,
        "ready": revision.ready,
        "percent": percent,
    }


def _create_operation(
    deps: Deps,
    request: RollbackRequest,
    service: ServiceConfig,
    emergency: bool,
    state: ServiceState,
    revisions: list[Revision],
    choice: TargetChoice,
    current: str | None,
) -> Operation:
    now = deps.clock.now()
    by_name = {r.name: r for r in revisions}
    target = choice.revision
    assert target is not None
    operation = deps.store.create_operation(
        now,
        kind="rollback",
        service=service.name,
        requested_by=request.user,
        channel=request.channel,
        reason=request.reason,
        emergency=emergency,
        state="approved" if emergency else "awaiting_approval",
        from_revision=current or "",
        to_revision=target.name,
        data={
            "from": _revision_view(deps, by_name.get(current or "")),
            "to": _revision_view(deps, target),
            "serving_before": state.serving(),
            "uri": state.uri,
            "requested_at": now.isoformat(),
            "automatic": request.automatic,
            "skipped": [
                {"revision": name, "why": by_name[name].ready_message} for name in choice.skipped
            ],
        },
    )
    _take_lock(deps, operation, emergency)
    deps.store.add_event(
        operation.id, now, "requested", actor=request.user, target=target.name, emergency=emergency
    )
    deps.audit(
        request.user,
        "rollback.requested",
        "ok",
        service=service.name,
        revision=target.name,
        operation_id=operation.id,
        emergency=emergency,
        reason=request.reason,
        **({"skipped_not_ready": list(choice.skipped)} if choice.skipped else {}),
    )
    if not emergency:
        request_approval(deps, operation.id, Action.SCHEDULED_ROLLBACK, request.user)
    return operation


def _take_lock(deps: Deps, operation: Operation, emergency: bool) -> None:
    store, now = deps.store, deps.clock.now()
    if store.acquire_lock(operation.service, operation.id, now):
        return
    holder = store.lock_holder(operation.service)
    if emergency and holder and holder.state == "awaiting_approval":
        _supersede(deps, holder.operation_id, operation)
        if store.acquire_lock(operation.service, operation.id, now):
            return
        holder = store.lock_holder(operation.service)
    store.update_operation(operation.id, now, state="cancelled")
    raise UserError("error.busy", service=operation.service, holder=holder)


def _supersede(deps: Deps, pending_id: str, emergency: Operation) -> None:
    """An on-call engineer must always get to safety: a pending request yields to them."""
    approval = deps.store.approval_for(pending_id)
    now = deps.clock.now()
    if approval is None or not deps.store.decide_approval(
        approval.id, "cancelled", emergency.requested_by, now
    ):
        return
    _finish(deps, pending_id, "cancelled", superseded_by=emergency.id)
    deps.audit(
        emergency.requested_by,
        "rollback.superseded",
        "ok",
        service=emergency.service,
        operation_id=pending_id,
        by_operation=emergency.id,
    )


# -- approvals --------------------------------------------------------------------------------


def decide(deps: Deps, approval_id: str, user: str, approve: bool) -> Operation:
    """Approve or reject a pending rollback (see claim_decision for who may, and when)."""
    operation = claim_decision(deps, approval_id, user, approve)
    if approve:
        deps.store.update_operation(operation.id, deps.clock.now(), state="approved")
        refresh_card(deps, operation.id)
    else:
        _finish(deps, operation.id, "rejected")
    return deps.store.operation(operation.id) or operation


def on_expired(deps: Deps, operation: Operation) -> None:
    """Nobody decided in time: the request ends and the service is free again."""
    _finish(deps, operation.id, "expired")
    deps.audit(
        BOT_ACTOR,
        "rollback.expired",
        "expired",
        service=operation.service,
        operation_id=operation.id,
    )


# -- execution --------------------------------------------------------------------------------


def execute(deps: Deps, operation_id: str) -> Operation:
    """Run the operation from whatever state it is in until it ends or waits for a person."""
    operation = deps.store.operation(operation_id)
    assert operation is not None
    while operation.state in RUNNING_STATES:
        operation = STEPS[operation.state](deps, operation)
    return operation


def _step_shift(deps: Deps, operation: Operation) -> Operation:
    service = deps.managed_service(operation.service)
    ref = deps.service_ref(service)
    started = deps.clock.now()
    deps.store.start_step(operation.id, "shift", started)
    try:
        state = deps.cloudrun.get_service(ref)
        if state.serving() == {operation.to_revision: 100} and not state.reconciling:
            return _advance(deps, operation, "verifying", "shift", started, already=True)
        if not operation.emergency:  # approved later: the target may have changed since
            target = deps.cloudrun.get_revision(ref, operation.to_revision)
            if not target.ready:
                return _fail(deps, operation, "not_ready", "shift", detail=target.ready_message)
        name = _patch_with_one_conflict_retry(deps, operation, state)
    except EtagConflict as error:
        return _fail(deps, operation, "conflict", "shift", detail=error.detail)
    except CloudRunError as error:
        return _fail(deps, operation, "patch_failed", "shift", detail=error.detail or error.reason)
    deps.store.update_operation(operation.id, deps.clock.now(), cloud_operation=name)
    deps.audit(
        BOT_ACTOR,
        "cloudrun.traffic_update",
        "ok",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        cloud_operation=name,
    )
    return _advance(deps, operation, "shifting", "shift", started, cloud_operation=name)


def _patch_with_one_conflict_retry(deps: Deps, operation: Operation, state: ServiceState) -> str:
    ref = state.ref
    try:
        return deps.cloudrun.start_traffic_update(
            ref, pinned_targets(state, operation.to_revision), state.etag
        )
    except EtagConflict:
        deps.store.add_event(operation.id, deps.clock.now(), "etag_conflict_retry")
        fresh = deps.cloudrun.get_service(ref)
        return deps.cloudrun.start_traffic_update(
            ref, pinned_targets(fresh, operation.to_revision), fresh.etag
        )


def pinned_targets(state: ServiceState, target: str) -> list[TrafficTarget]:
    """100% on ``target``, pinned by name; every existing tag kept at 0% on its own revision."""
    tags = {s.tag: s.revision for s in state.traffic if s.tag}
    target_tags = [tag for tag, revision in tags.items() if revision == target]
    targets = [TrafficTarget(target, 100, target_tags[0] if target_tags else "")]
    for tag, revision in sorted(tags.items()):
        if tag not in target_tags[:1]:
            targets.append(TrafficTarget(revision, 0, tag))
    return targets


def _step_wait(deps: Deps, operation: Operation) -> Operation:
    started = deps.clock.now()
    deps.store.start_step(operation.id, "wait", started)
    try:
        state = deps.cloudrun.wait_operation(
            operation.cloud_operation, deps.config.rollback.operation_timeout_s
        )
    except CloudRunError as error:
        return _fail(
            deps, operation, "operation_failed", "wait", detail=error.detail or error.reason
        )
    if state.serving() != {operation.to_revision: 100}:
        return _fail(deps, operation, "traffic_mismatch", "wait", serving=state.serving())
    deps.store.add_event(
        operation.id, deps.clock.now(), "traffic_shifted", actor=BOT_ACTOR, serving=state.serving()
    )
    return _advance(deps, operation, "verifying", "wait", started, serving=state.serving())


def _step_verify(deps: Deps, operation: Operation) -> Operation:
    service = deps.managed_service(operation.service)
    settings = deps.config.rollback
    started = deps.clock.now()
    deps.store.start_step(operation.id, "verify", started)
    url = operation.data.get("uri", "").rstrip("/") + service.health_path
    checks: list[dict[str, Any]] = []
    in_a_row = 0
    for attempt in range(settings.health_checks + 2):
        if attempt:
            deps.clock.sleep(settings.health_check_interval_s)
        result = deps.probe.get(url, settings.health_check_timeout_s)
        checks.append(
            {
                "status": result.status,
                "ok": result.ok,
                "detail": result.detail,
                "ms": round(result.elapsed_ms),
            }
        )
        in_a_row = in_a_row + 1 if result.ok else 0
        if in_a_row >= settings.health_checks:
            return _succeed(deps, operation, started, url, checks)
    return _fail(deps, operation, "healthz_failed", "verify", url=url, checks=checks[-3:])


def _succeed(
    deps: Deps, operation: Operation, started: datetime, url: str, checks: list[dict[str, Any]]
) -> Operation:
    now = deps.clock.now()
    deps.store.finish_step(operation.id, "verify", now, "done", {"url": url, "checks": checks})
    _record_timing(deps, operation, "verify", started)
    deps.store.add_event(operation.id, now, "healthz_verified", actor=BOT_ACTOR, url=url)
    deps.store.record_serving(operation.service, operation.to_revision, "served", now, operation.id)
    if operation.from_revision:
        deps.store.record_serving(
            operation.service, operation.from_revision, "rolled_back_from", now, operation.id
        )
    deps.audit(
        BOT_ACTOR,
        "rollback.succeeded",
        "ok",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
    )
    return _finish(deps, operation.id, "succeeded", health={"url": url, "checks": len(checks)})


STEPS = {"approved": _step_shift, "shifting": _step_wait, "verifying": _step_verify}
STEP_OF_STATE = {"approved": "shift", "shifting": "wait", "verifying": "verify"}


def _advance(
    deps: Deps, operation: Operation, state: str, step: str, started: datetime, **result: Any
) -> Operation:
    now = deps.clock.now()
    deps.store.finish_step(operation.id, step, now, "done", result)
    _record_timing(deps, operation, step, started)
    updated = deps.store.update_operation(operation.id, now, state=state)
    refresh_card(deps, operation.id)
    return updated


def _record_timing(deps: Deps, operation: Operation, step: str, started: datetime) -> None:
    current = deps.store.operation(operation.id)
    assert current is not None
    timings = dict(current.data.get("timings", {}))
    timings[step] = (deps.clock.now() - started).total_seconds()
    deps.store.merge_data(operation.id, deps.clock.now(), timings=timings)


def _fail(deps: Deps, operation: Operation, code: str, step: str, **detail: Any) -> Operation:
    """End loudly, naming the traffic as it is now (read fresh, best effort)."""
    now = deps.clock.now()
    deps.store.finish_step(operation.id, step, now, "failed", {"code": code, **detail})
    traffic_now = _traffic_now(deps, operation)
    deps.store.add_event(operation.id, now, "failed", code=code, **detail)
    deps.audit(
        BOT_ACTOR,
        "rollback.failed",
        "failed",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        code=code,
        **detail,
    )
    offers = _recovery_offers(deps, operation) if code == "healthz_failed" else {}
    error = {"code": code, "step": STEP_OF_STATE.get(step, step), **detail}
    failed = _finish(
        deps, operation.id, "failed", error=error, traffic_now=traffic_now, offers=offers
    )
    _post_failure_alert(deps, failed)
    return failed


def _recovery_offers(deps: Deps, operation: Operation) -> dict[str, str]:
    """After a failed health check on the target: the revision that served before, and the
    next candidate back (what a rollback without a revision would now pick, skipping both)."""
    offers = {"previous": operation.from_revision, "next": ""}
    service = deps.config.service(operation.service)
    if service is None:
        return offers
    try:
        revisions = deps.cloudrun.list_revisions(deps.service_ref(service))
    except CloudRunError:
        return offers
    tried = frozenset({operation.to_revision, operation.from_revision})
    serving = {operation.to_revision: 100}
    choice = _choice(deps, operation.service, revisions, serving, None, True, also_bad=tried)
    offers["next"] = choice.revision.name if choice.revision and not choice.problem else ""
    return offers


def check_recovery_offer(deps: Deps, operation_id: str, revision: str, user: str) -> Operation:
    """A click on a failed rollback's "back to ..." button: still the newest rollback of its
    service, and ``revision`` one it offered. Returns the failed operation; UserError if stale."""
    operation = deps.store.operation(operation_id)
    offers = ((operation.data or {}).get("offers") or {}) if operation else {}
    if operation is None or not revision or revision not in offers.values():
        raise UserError("notice.unknown_request")
    latest = deps.store.latest_operation(operation.service, "rollback")
    holder = deps.store.lock_holder(operation.service)
    if (latest is not None and latest.id != operation.id) or holder is not None:
        deps.audit(
            user,
            "rollback.refused",
            "refused",
            service=operation.service,
            revision=revision,
            why="stale",
            operation_id=operation.id,
        )
        newer = latest if latest is not None and latest.id != operation.id else None
        raise UserError(
            "notice.recovery_stale",
            service=operation.service,
            latest=_previous_view(newer) if newer else None,
            holder=holder,
        )
    return operation


def _traffic_now(deps: Deps, operation: Operation) -> dict[str, int] | None:
    service = deps.config.service(operation.service)
    if service is None:
        return None
    try:
        return deps.cloudrun.get_service(deps.service_ref(service)).serving()
    except CloudRunError:
        return None


def _finish(deps: Deps, operation_id: str, state: str, **data: Any) -> Operation:
    now = deps.clock.now()
    if data:
        deps.store.merge_data(operation_id, now, **data)
    operation = deps.store.update_operation(operation_id, now, state=state)
    deps.store.release_lock(operation.service, operation_id)
    refresh_card(deps, operation_id)
    return operation


def _post_failure_alert(deps: Deps, operation: Operation) -> None:
    """A new message, not only the card's update: a failure must notify the channel."""
    message = deps.renderer.message("rollback_failed", op=card_view(deps, operation))
    announce(deps, operation.channel, message)


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    """A bug must not leave an operation silently half-done: end it loudly."""
    operation = deps.store.operation(operation_id)
    if operation is not None and operation.state in RUNNING_STATES:
        _fail(deps, operation, "internal", operation.state)
