"""The rollback workflow, as a durable state machine.

States: awaiting_approval -> approved -> shifting -> verifying -> succeeded
        (or failed / rejected / expired / cancelled).

Each step commits its result before the next starts. A restarted bot resumes from the state it
finds: ``approved`` re-reads the service (and skips the PATCH if traffic is already there),
``shifting`` polls the long-running operation it recorded rather than sending a second PATCH,
``verifying`` probes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config import Action, ServiceConfig
from bot.ops.approvals import claim_decision, request_approval
from bot.ops.cards import card_view, refresh_card
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import UserError
from bot.policy.approvals import Decision, Verdict, decide_rollback
from bot.policy.targets import choose_target, current_revision
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
    target, current = _choose_target(deps, request, service, state, revisions)
    operation = _create_operation(
        deps, request, service, emergency, state, revisions, target, current
    )
    if emergency:
        deps.audit(
            request.user,
            "rollback.approved",
            "ok",
            service=service.name,
            revision=target.name,
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


def _choose_target(
    deps: Deps,
    request: RollbackRequest,
    service: ServiceConfig,
    state: ServiceState,
    revisions: list[Revision],
) -> tuple[Revision, str | None]:
    serving = state.serving()
    choice = choose_target(
        revisions,
        serving,
        deps.store.served_revisions(service.name),
        deps.store.rolled_back_from(service.name),
        request.revision,
    )
    if choice.revision is None or choice.problem is not None:
        deps.audit(
            request.user,
            "rollback.refused",
            "refused",
            service=service.name,
            revision=request.revision or "",
            why=str(choice.problem),
        )
        raise UserError(
            f"error.target.{choice.problem}",
            service=service.name,
            revision=request.revision or "",
            recent=_recent(deps, revisions, serving),
        )
    return choice.revision, current_revision(serving)


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
    target: Revision,
    current: str | None,
) -> Operation:
    now = deps.clock.now()
    by_name = {r.name: r for r in revisions}
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
    error = {"code": code, "step": STEP_OF_STATE.get(step, step), **detail}
    failed = _finish(deps, operation.id, "failed", error=error, traffic_now=traffic_now)
    _post_failure_alert(deps, failed)
    return failed


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
    deps.chat.post(operation.channel, message)


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    """A bug must not leave an operation silently half-done: end it loudly."""
    operation = deps.store.operation(operation_id)
    if operation is not None and operation.state in RUNNING_STATES:
        _fail(deps, operation, "internal", operation.state)
