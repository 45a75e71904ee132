"""Running a drill, one committed step at a time (see the package's docstring)."""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import timedelta
from typing import Any

from bot.ops import rollback
from bot.ops.applying import Followed, follow_change, left_as
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.drill.record import commit, end, log_step
from bot.ops.drill.states import DRILL_TAG, RUNNING_STATES, DrillData
from bot.ops.errors import Superseded, UserError
from bot.ops.health import config_problem, probe_health
from bot.ops.release.deploy import PROMETHEUS_LINE
from bot.ops.release.states import GREEN_TAG
from bot.ops.rollback import RollbackData, RollbackRequest
from bot.ops.slow import still_applying
from bot.ops.stepping import advance, ensure_current
from bot.ops.traffic import with_other_tags
from bot.ports import (
    CloudRunError,
    EtagConflict,
    RevisionExists,
    ServiceRef,
    ServiceState,
    TrafficTarget,
)
from bot.store import TERMINAL_STATES, Operation

log = logging.getLogger("runback.drill")

MAX_STEPS_PER_RUN = 20
ROLLBACK_POLL_S = 0.5  # how soon a drill looks again at the rollback it started


def execute(deps: Deps, operation_id: str) -> Operation:
    """Advance the drill until it ends or waits (for its rollback, on a due time)."""
    return advance(
        deps,
        operation_id,
        STEPS,
        name="drill",
        max_steps=MAX_STEPS_PER_RUN,
        wakes_early=_rollback_ended,
    )


def _rollback_ended(deps: Deps, operation: Operation) -> bool:
    """The rollback a waiting drill started has ended (the engine then runs the drill at once)."""
    if operation.state != "waiting_rollback":
        return False
    child = deps.store.operations.operation(DrillData.of(operation).rollback_id)
    return child is not None and child.state in TERMINAL_STATES


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    operation = deps.store.operations.operation(operation_id)
    if operation is not None and operation.state in RUNNING_STATES:
        with suppress(Superseded):  # an on-call engineer moved it meanwhile: their move stands
            _safety_then_end(deps, operation, {"code": "internal"})


def _ref(deps: Deps, operation: Operation) -> ServiceRef:
    return deps.service_ref(deps.managed_service(operation.service))


# -- 1. deploy the test revision at 100%, tagged -------------------------------------------


def _step_deploy(deps: Deps, operation: Operation) -> Operation:
    started = deps.clock.now()
    ref = _ref(deps, operation)
    data = DrillData.of(operation)
    try:
        state = deps.cloudrun.get_service(ref)
        if data.blue and state.serving() == {operation.to_revision: 100}:
            name = ""  # a restart after the PATCH was applied: follow it
        else:
            blue = data.blue or _steady_blue(state)
            if blue is None:
                outcome = {"code": "not_steady", "serving": state.serving()}
                return end(deps, operation, False, outcome)
            revisions = deps.cloudrun.list_revisions(ref)
            image = next((r.image for r in revisions if r.name == blue), "")
            operation = commit(deps, operation, blue=blue, image=image, uri=state.uri)
            name = _deploy(deps, operation, state, image)
    except RevisionExists:  # a restart after the PATCH: the revision is ours, follow it
        name = ""
    except CloudRunError as error:
        return end(
            deps,
            operation,
            False,
            {"code": "deploy_failed", "detail": error.detail or error.reason},
        )
    now = deps.clock.now()
    deps.audit(
        BOT_ACTOR,
        "cloudrun.drill_deploy",
        "ok",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        cloud_operation=name,
    )
    entry = log_step(operation, "deploy", True, started, now, revision=operation.to_revision)
    return commit(
        deps, operation, "deploy_applying", pending=name, log=entry, started_at=now.isoformat()
    )


def _steady_blue(state: ServiceState) -> str | None:
    serving = state.serving()
    return next((rev for rev, pct in serving.items() if pct == 100), None)


def _deploy(deps: Deps, operation: Operation, state: ServiceState, image: str) -> str:
    def send(current: ServiceState) -> str:
        targets = [TrafficTarget(operation.to_revision, 100, DRILL_TAG)]
        targets = with_other_tags(targets, current, own=(GREEN_TAG,))
        return deps.cloudrun.start_deploy(
            current.ref,
            image,
            operation.to_revision,
            targets,
            current.etag,
            base_revision=DrillData.of(operation).blue,  # the test revision is blue's own
        )

    try:
        return send(state)
    except EtagConflict:
        ensure_current(deps, operation)  # not over an on-call rollback made meanwhile
        return send(deps.cloudrun.get_service(state.ref))


def _step_wait_deploy(deps: Deps, operation: Operation) -> Operation:
    started = deps.clock.now()
    timeout = deps.config.release.operation_timeout_s
    data = DrillData.of(operation)
    expect = {operation.to_revision: 100}
    if data.pending:
        followed = follow_change(deps, data.pending, expect, timeout)
    else:  # a restart after the PATCH was applied: the service as it is says how it went
        try:
            followed = left_as(deps.cloudrun.get_service(_ref(deps, operation)), expect)
        except CloudRunError as error:
            followed = Followed(failed=error)
    if followed.slow is not None:  # Cloud Run is still applying it: follow it again
        return still_applying(deps, operation, "drill", followed.slow)
    state = followed.applied
    if state is None:
        assert followed.failed is not None
        detail = followed.failed.detail or followed.failed.reason
        outcome = {"code": "deploy_failed", "detail": detail}
        return _safety_then_end(deps, operation, outcome)
    entry = log_step(operation, "deployed", True, started, deps.clock.now(), uri=state.uri)
    next_state = "rolling_back" if data.stop_requested else "verifying"
    return commit(deps, operation, next_state, pending="", uri=state.uri, log=entry)


# -- 2. verify the test revision's health ------------------------------------------------


def _step_verify(deps: Deps, operation: Operation) -> Operation:
    service = deps.managed_service(operation.service)
    settings = deps.config.rollback
    started = deps.clock.now()
    in_a_row, result = 0, None
    for attempt in range(settings.health_checks + 2):
        if attempt:
            deps.clock.sleep(settings.health_check_interval_s)
        _, result = probe_health(deps, service, DrillData.of(operation).uri)
        if config_problem(result):
            break
        in_a_row = in_a_row + 1 if result.ok else 0
        if in_a_row >= settings.health_checks:
            break
    assert result is not None
    healthy = in_a_row >= settings.health_checks
    facts = {"status": result.status, "path": service.health_path}
    entry = log_step(operation, "verify", healthy, started, deps.clock.now(), **facts)
    failure: dict[str, Any] = (
        {} if healthy else {"outcome": {"code": result.problem or "test_unhealthy", **facts}}
    )
    # Healthy or not, the drill now rolls back: that is what it practises.
    return commit(deps, operation, "rolling_back", log=entry, **failure)


# -- 3. roll back with the production rollback workflow -----------------------------------


def _step_roll_back(deps: Deps, operation: Operation) -> Operation:
    child = _existing_rollback(deps, operation)
    if child is None:
        service = deps.managed_service(operation.service)
        blue = DrillData.of(operation).blue
        assert blue  # committed before the test revision was sent
        reason = deps.renderer.text("drill.rollback_reason", id=operation.id)
        request = RollbackRequest(
            service=operation.service,
            revision=blue,
            reason=reason,
            user=BOT_ACTOR,
            channel=operation.channel,
            automatic=True,
            parent=operation.id,
        )
        try:
            child = rollback.create_rollback(deps, request, service, emergency=True)
        except UserError as error:
            outcome = {"code": "rollback_refused", "detail": error.key}
            return end(deps, operation, False, outcome)
    if deps.submit is not None:
        deps.submit(child.id)
    return commit(deps, operation, "waiting_rollback", rollback_id=child.id, due_at=None)


def _existing_rollback(deps: Deps, operation: Operation) -> Operation | None:
    """The rollback this drill already started (a restart between its start and our commit)."""
    rollback_id = DrillData.of(operation).rollback_id
    if rollback_id:
        return deps.store.operations.operation(rollback_id)
    latest = deps.store.operations.latest_operation(operation.service, "rollback")
    if latest is not None and RollbackData.of(latest).drill == operation.id:
        return latest
    return None


def _step_wait_rollback(deps: Deps, operation: Operation) -> Operation:
    child = deps.store.operations.operation(DrillData.of(operation).rollback_id)
    assert child is not None
    if child.state not in TERMINAL_STATES:
        due = deps.clock.now() + timedelta(seconds=ROLLBACK_POLL_S)
        return commit(deps, operation, due_at=due.isoformat())
    now = deps.clock.now()
    to_safe = (child.finished_at - child.created_at).total_seconds() if child.finished_at else None
    ok = child.state == "succeeded"
    entry = log_step(
        operation,
        "rollback",
        ok,
        child.created_at,
        child.finished_at or now,
        to=child.to_revision,
        rollback=child.id,
    )
    operation = commit(deps, operation, due_at=None, time_to_safe_s=to_safe, log=entry)
    if not ok:
        error = RollbackData.of(child).error
        return end(
            deps,
            operation,
            False,
            {"code": "rollback_failed", "detail": error.code if error else child.state},
        )
    return commit(deps, operation, "checking_metrics")


# -- 4. verify /metrics, then record --------------------------------------------------------


def _step_metrics(deps: Deps, operation: Operation) -> Operation:
    service = deps.managed_service(operation.service)
    started = deps.clock.now()
    uri = DrillData.of(operation).uri
    base = (service.url or uri).rstrip("/")
    audience = uri.rstrip("/") if service.requires_auth else None
    timeout = deps.config.rollback.health_check_timeout_s
    result = deps.probe.get(base + "/metrics", timeout, audience=audience)
    ok = result.ok and bool(PROMETHEUS_LINE.search(result.detail))
    entry = log_step(operation, "metrics", ok, started, deps.clock.now(), status=result.status)
    operation = commit(deps, operation, log=entry)
    if not ok:
        return end(deps, operation, False, {"code": "metrics_failed", "status": result.status})
    earlier = DrillData.of(operation).outcome
    return end(deps, operation, not earlier, earlier or {"code": "passed"})


STEPS = {
    "deploying": _step_deploy,
    "deploy_applying": _step_wait_deploy,
    "verifying": _step_verify,
    "rolling_back": _step_roll_back,
    "waiting_rollback": _step_wait_rollback,
    "checking_metrics": _step_metrics,
}


# -- the end ---------------------------------------------------------------------------------


def _safety_then_end(deps: Deps, operation: Operation, outcome: dict[str, Any]) -> Operation:
    """Something failed after the test revision may have taken traffic: roll back first (the
    drill's own rollback) unless the revision that served before still serves all of it."""
    blue = DrillData.of(operation).blue
    try:
        state = deps.cloudrun.get_service(_ref(deps, operation))
        safe = bool(blue) and state.serving() == {blue: 100}
    except CloudRunError:
        safe = False
    if safe or not blue:
        return end(deps, operation, False, outcome)
    return commit(deps, operation, "rolling_back", outcome=outcome)
