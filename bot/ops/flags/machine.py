"""The flip as a durable state machine: which step runs in which state, and the loop."""

from __future__ import annotations

import logging
from typing import Any

from bot.ops.context import Deps
from bot.ops.flags.cloud import CHANGES, cloud_failure, patch, traffic_now
from bot.ops.flags.judging import step_watch
from bot.ops.flags.record import (
    Superseded,
    commit,
    due_in,
    end,
    event,
)
from bot.ops.flags.states import FLAG_TAG, MAX_STEPS_PER_RUN, RUNNING_STATES, FlagData
from bot.ops.flags.verify import verify_tag
from bot.ops.stepping import advance, step_ended, step_started
from bot.ops.traffic import serving_targets
from bot.ports import CloudRunError, ServiceState, TrafficTarget
from bot.store import Operation

log = logging.getLogger("runback.flags")


def execute(deps: Deps, operation_id: str) -> Operation:
    """Advance the flip until it ends or waits for its next due time."""
    return advance(
        deps,
        operation_id,
        STEPS,
        name="flag flip",
        max_steps=MAX_STEPS_PER_RUN,
        stop_when_stalled=True,
    )


def _step_deploy(deps: Deps, operation: Operation) -> Operation:
    """One PATCH: the new revision (the env var changed) at 0% with tag ``flag``, every
    serving target pinned by revision name."""
    operation = commit(deps, operation, **step_started(operation, "deploy", deps.clock.now()))
    try:
        state = deps.cloudrun.get_service(deps.service_ref(deps.managed_service(operation.service)))
    except CloudRunError as error:
        return cloud_failure(deps, operation, "deploy", error)
    targets = [*serving_targets(state), TrafficTarget(operation.to_revision, 0, FLAG_TAG)]
    return patch(deps, operation, targets, then="deployed", purpose="deploy", deploy=True)


def _step_applying(deps: Deps, operation: Operation) -> Operation:
    return CHANGES.follow(deps, operation, AFTER_APPLY, failed=_failed_change)


def _failed_change(
    deps: Deps, operation: Operation, purpose: str, error: CloudRunError
) -> Operation:
    if purpose == "deploy":
        now = deps.clock.now()
        operation = commit(deps, operation, **step_ended(operation, "deploy", now, "failed"))
    return cloud_failure(deps, operation, purpose, error)


def _after_deploy(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    tag = next((s for s in state.traffic if s.tag == FLAG_TAG), None)
    now = deps.clock.now()
    if tag is None or not tag.uri:
        operation = commit(deps, operation, **step_ended(operation, "deploy", now, "failed"))
        return _untag(deps, operation, {"code": "no_tag_url"})
    event(deps, operation, "deployed", revision=operation.to_revision)
    steps = step_ended(operation, "deploy", now, "done")
    operation = commit(
        deps, operation, "verifying", tag_uri=tag.uri, service_uri=state.uri, **steps
    )
    return commit(deps, operation, **step_started(operation, "verify", now))


def _step_verify(deps: Deps, operation: Operation) -> Operation:
    problem = verify_tag(deps, operation)
    now = deps.clock.now()
    if problem is not None:
        operation = commit(deps, operation, **step_ended(operation, "verify", now, "failed"))
        return _untag(deps, operation, problem)
    event(deps, operation, "verified", revision=operation.to_revision)
    steps = step_ended(operation, "verify", now, "done")
    return commit(deps, operation, "shifting", **steps)


def _step_shift(deps: Deps, operation: Operation) -> Operation:
    """100% to the new revision, in one PATCH (its ``flag`` tag goes with it)."""
    operation = commit(deps, operation, **step_started(operation, "shift", deps.clock.now()))
    targets = [TrafficTarget(operation.to_revision, 100)]
    return patch(deps, operation, targets, then="shifted", purpose="shift")


def _after_shift(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    now = deps.clock.now()
    event(deps, operation, "shifted", revision=operation.to_revision, percent=100)
    minutes = deps.config.thresholds.observe_minutes
    steps = step_ended(operation, "shift", now, "done")
    operation = commit(
        deps,
        operation,
        "watching",
        shifted_at=now.isoformat(),
        watch_until=due_in(deps, minutes * 60),
        due_at=due_in(deps, deps.config.release.judge_interval_s),
        **steps,
    )
    return commit(deps, operation, **step_started(operation, "watch", now))


def _untag(deps: Deps, operation: Operation, outcome: dict[str, Any]) -> Operation:
    """The new revision never had traffic: remove its tag, leave every target as it is."""
    if operation.state != "untagging":
        operation = commit(deps, operation, "untagging", outcome=outcome)
    try:
        state = deps.cloudrun.get_service(deps.service_ref(deps.managed_service(operation.service)))
    except CloudRunError as error:
        return cloud_failure(deps, operation, "untag", error)
    return patch(deps, operation, serving_targets(state), then="untagged", purpose="untag")


def _step_untagging(deps: Deps, operation: Operation) -> Operation:
    """A restart between deciding to untag and sending it: send it now."""
    return _untag(deps, operation, FlagData.of(operation).outcome or {"code": "internal"})


def _after_untag(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    outcome = FlagData.of(operation).outcome or {}
    final = "cancelled" if outcome.get("code") == "stopped" else "failed"
    operation = commit(deps, operation, traffic_now=state.serving())
    return end(deps, operation, final, outcome)


def _step_roll_back(deps: Deps, operation: Operation) -> Operation:
    """100% back on the revision that served before the flip, at once."""
    targets = [TrafficTarget(operation.from_revision, 100)]
    return patch(deps, operation, targets, then="rolled_back", purpose="rollback")


def _after_roll_back(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    now = deps.clock.now()
    if "watch" in FlagData.of(operation).steps:
        operation = commit(deps, operation, **step_ended(operation, "watch", now, "failed"))
    deps.store.serving.record_serving(
        operation.service, operation.to_revision, "rolled_back_from", now, operation.id
    )
    operation = commit(deps, operation, traffic_now=state.serving())
    return end(deps, operation, "rolled_back", FlagData.of(operation).outcome or {})


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    """A bug must not leave traffic nobody watches: back to the previous revision (or, before
    any traffic moved, the tag removed), loudly."""
    operation = deps.store.operations.operation(operation_id)
    if operation is None or operation.state not in RUNNING_STATES:
        return
    outcome = {"code": "internal"}
    try:
        if operation.state in ("rolling_back", "untagging"):
            operation = commit(deps, operation, traffic_now=traffic_now(deps, operation))
            end(deps, operation, "failed", outcome)
        elif _may_have_traffic(operation):
            commit(deps, operation, "rolling_back", due_at=None, pending=None, outcome=outcome)
        else:  # the new revision may wear its tag: remove it, then end
            commit(deps, operation, "untagging", due_at=None, pending=None, outcome=outcome)
    except Superseded:  # a person moved it meanwhile: their move stands
        log.warning("flag flip %s was moved on while it was being failed", operation_id)


def _may_have_traffic(operation: Operation) -> bool:
    if operation.state in ("shifting", "watching"):
        return True
    purpose = FlagData.of(operation).purpose
    return operation.state == "applying" and purpose in ("shift", "rollback")


STEPS = {
    "deploying": _step_deploy,
    "applying": _step_applying,
    "verifying": _step_verify,
    "untagging": _step_untagging,
    "shifting": _step_shift,
    "watching": step_watch,
    "rolling_back": _step_roll_back,
}

AFTER_APPLY = {
    "deployed": _after_deploy,
    "untagged": _after_untag,
    "shifted": _after_shift,
    "rolled_back": _after_roll_back,
}
