"""Running a rollback: shift 100% to the target, wait for Cloud Run, verify health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.ops.applying import follow_change
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.health import config_problem, probe_health
from bot.ops.rollback.record import commit, fail, finish
from bot.ops.rollback.states import HealthVerified, RollbackData
from bot.ops.slow import still_applying
from bot.ops.stepping import advance
from bot.ops.traffic import pinned_targets
from bot.ports import CloudRunError, EtagConflict, ServiceState
from bot.store import Operation


def execute(deps: Deps, operation_id: str) -> Operation:
    """Run the operation from whatever state it is in until it ends or waits for a person."""
    return advance(deps, operation_id, STEPS, name="rollback")


def _step_shift(deps: Deps, operation: Operation) -> Operation:
    service = deps.managed_service(operation.service)
    ref = deps.service_ref(service)
    started = deps.clock.now()
    deps.store.operations.start_step(operation.id, "shift", started)
    try:
        state = deps.cloudrun.get_service(ref)
        if state.serving() == {operation.to_revision: 100} and not state.reconciling:
            return _advance(deps, operation, "verifying", "shift", started, already=True)
        if not operation.emergency:  # approved later: the target may have changed since
            target = deps.cloudrun.get_revision(ref, operation.to_revision)
            if not target.ready:
                return fail(deps, operation, "not_ready", "shift", detail=target.ready_message)
        name = _patch_with_one_conflict_retry(deps, operation, state)
    except EtagConflict as error:
        return fail(deps, operation, "conflict", "shift", detail=error.detail)
    except CloudRunError as error:
        return fail(deps, operation, "patch_failed", "shift", detail=error.detail or error.reason)
    deps.audit(
        BOT_ACTOR,
        "cloudrun.traffic_update",
        "ok",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        cloud_operation=name,
    )
    # the operation's name is stored with the state that follows it (one compare-and-set), so
    # a restarted bot follows that operation instead of sending the change again
    sent = {"cloud_operation": name}
    return _advance(deps, operation, "shifting", "shift", started, columns=sent, **sent)


def _patch_with_one_conflict_retry(deps: Deps, operation: Operation, state: ServiceState) -> str:
    ref = state.ref
    drop = frozenset(RollbackData.of(operation).drop_tags)
    try:
        return deps.cloudrun.start_traffic_update(
            ref, pinned_targets(state, operation.to_revision, drop), state.etag
        )
    except EtagConflict:
        deps.store.journal.add_event(operation.id, deps.clock.now(), "etag_conflict_retry")
        fresh = deps.cloudrun.get_service(ref)
        return deps.cloudrun.start_traffic_update(
            ref, pinned_targets(fresh, operation.to_revision, drop), fresh.etag
        )


def _step_wait(deps: Deps, operation: Operation) -> Operation:
    started = deps.clock.now()
    deps.store.operations.start_step(operation.id, "wait", started)
    expect = {operation.to_revision: 100}
    timeout = deps.config.rollback.operation_timeout_s
    followed = follow_change(deps, operation.cloud_operation, expect, timeout)
    if followed.slow is not None:
        return still_applying(deps, operation, "rollback", followed.slow)
    state = followed.applied
    if state is None:
        if followed.state is None:  # the operation itself failed
            error = followed.failed
            assert error is not None
            detail = error.detail or error.reason
            return fail(deps, operation, "operation_failed", "wait", detail=detail)
        if followed.state.failure:  # Cloud Run's own reason, not "the traffic is not there"
            return fail(deps, operation, "change_failed", "wait", detail=followed.state.failure)
        return fail(deps, operation, "traffic_mismatch", "wait", serving=followed.state.serving())
    deps.store.journal.add_event(
        operation.id, deps.clock.now(), "traffic_shifted", actor=BOT_ACTOR, serving=state.serving()
    )
    return _advance(deps, operation, "verifying", "wait", started, serving=state.serving())


def _step_verify(deps: Deps, operation: Operation) -> Operation:
    service = deps.managed_service(operation.service)
    settings = deps.config.rollback
    started = deps.clock.now()
    deps.store.operations.start_step(operation.id, "verify", started)
    asked = RollbackData.of(operation).uri
    checks: list[dict[str, Any]] = []
    in_a_row = 0
    url = ""
    for attempt in range(settings.health_checks + 2):
        if attempt:
            deps.clock.sleep(settings.health_check_interval_s)
        url, result = probe_health(deps, service, asked)
        if config_problem(result):  # a configuration error, not an unhealthy revision
            return fail(deps, operation, result.problem, "verify", url=url, status=result.status)
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
    return fail(deps, operation, "healthz_failed", "verify", url=url, checks=checks[-3:])


def _succeed(
    deps: Deps, operation: Operation, started: datetime, url: str, checks: list[dict[str, Any]]
) -> Operation:
    now = deps.clock.now()
    deps.store.operations.finish_step(
        operation.id, "verify", now, "done", {"url": url, "checks": checks}
    )
    timings = _timings(operation, "verify", started, now)
    deps.store.journal.add_event(operation.id, now, "healthz_verified", actor=BOT_ACTOR, url=url)
    deps.store.serving.record_serving(
        operation.service, operation.to_revision, "served", now, operation.id
    )
    if operation.from_revision:
        deps.store.serving.record_serving(
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
    health = HealthVerified(url=url, checks=len(checks))
    return finish(deps, operation.id, "succeeded", timings=timings, health=health)


STEPS = {"approved": _step_shift, "shifting": _step_wait, "verifying": _step_verify}


def _advance(
    deps: Deps,
    operation: Operation,
    state: str,
    step: str,
    started: datetime,
    columns: dict[str, str] | None = None,
    **result: Any,
) -> Operation:
    now = deps.clock.now()
    deps.store.operations.finish_step(operation.id, step, now, "done", result)
    timings = _timings(operation, step, started, now)
    return commit(deps, operation, state, columns=columns, timings=timings)


def _timings(operation: Operation, step: str, started: datetime, now: datetime) -> dict[str, float]:
    """The operation's step timings, with ``step``'s: the card shows each."""
    return {**RollbackData.of(operation).timings, step: (now - started).total_seconds()}
