"""Phase 5: green becomes blue, or 100% goes back to blue."""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

from bot.ops.context import Deps
from bot.ops.errors import Superseded
from bot.ops.release.cloud import patch
from bot.ops.release.record import commit, end
from bot.ops.release.states import FINAL_STATES, ReleaseData, TrafficMark
from bot.ops.rollback.target import next_target
from bot.ports import CloudRunError, ServiceState, TrafficTarget
from bot.store import Operation


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    """A bug must not leave green with traffic nobody watches: go back to blue, loudly."""
    operation = deps.store.operations.operation(operation_id)
    if operation is None or operation.state in FINAL_STATES:
        return
    with suppress(Superseded):  # a person moved it meanwhile: their move stands
        if operation.state == "rolling_back":
            end(deps, operation, "failed", {"code": "internal"})
        else:
            commit(deps, operation, "rolling_back", due_at=None, outcome={"code": "internal"})


def step_finalize(deps: Deps, operation: Operation) -> Operation:
    targets = [TrafficTarget(operation.to_revision, 100)]
    return patch(deps, operation, targets, then="finalized", purpose="finalize")


def after_finalize(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    now = deps.clock.now()
    deps.store.serving.record_serving(
        operation.service,
        operation.from_revision,
        "served",
        now - timedelta(microseconds=1),
        operation.id,
    )
    deps.store.serving.record_serving(
        operation.service, operation.to_revision, "served", now, operation.id
    )
    outcome = {"code": "released", "next_target": _next_target(deps, operation, state)}
    return end(deps, operation, "succeeded", outcome)


def _next_target(deps: Deps, operation: Operation, state: ServiceState) -> str:
    """Where a rollback would go now, as every rollback decides it ("" when it cannot tell)."""
    service = deps.config.service(operation.service)
    if service is None:
        return ""
    try:
        revisions = deps.cloudrun.list_revisions(deps.service_ref(service))
    except CloudRunError:
        return ""
    choice = next_target(deps, operation.service, revisions, state.serving())
    return choice.revision.name if choice.revision and not choice.problem else ""


def step_roll_back(deps: Deps, operation: Operation) -> Operation:
    targets = [TrafficTarget(operation.from_revision, 100)]
    return patch(deps, operation, targets, then="rolled_back", purpose="rollback")


def after_roll_back(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    deps.store.serving.record_serving(
        operation.service, operation.to_revision, "rolled_back_from", deps.clock.now(), operation.id
    )
    release = ReleaseData.of(operation)
    back = TrafficMark(at=deps.clock.now().isoformat(), percent=0, event="rollback")
    operation = commit(deps, operation, history=[*release.history, back])
    return end(deps, operation, "rolled_back", release.outcome or {})
