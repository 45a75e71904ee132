"""Phase 3: the canary steps (10% -> 50% -> 100%), and the tech lead's approval for 100%."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from bot.config import Action
from bot.ops.approvals import claim_decision, request_approval
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import Superseded
from bot.ops.release.cloud import patch
from bot.ops.release.record import commit, event
from bot.ops.release.states import GREEN_TAG, ReleaseData, TrafficMark
from bot.ops.release.view import refresh
from bot.ops.stepping import due_in
from bot.ports import CloudRunError, ServiceState, TrafficTarget
from bot.store import Move, Operation


def next_step(deps: Deps, operation: Operation) -> Operation:
    release = ReleaseData.of(operation)
    index = release.step + 1
    if index == 0 and release.guarded and not release.migration_approved_by:
        return _ask_for_migration(deps, operation)
    percent = release.percents[index]
    needs_approval = percent == 100 and not release.staging
    if needs_approval and not release.full_traffic_approved_by:
        return _ask_for_full_traffic(deps, operation, index)
    return commit(deps, operation, "shifting", step=index, due_at=None)


def step_shift(deps: Deps, operation: Operation) -> Operation:
    paused = moved_out_of_band(deps, operation)
    if paused is not None:
        return paused
    percent = ReleaseData.of(operation).percent
    blue, green = operation.from_revision, operation.to_revision
    targets = [TrafficTarget(green, percent, GREEN_TAG)]
    if percent < 100:
        targets.insert(0, TrafficTarget(blue, 100 - percent))
    return patch(deps, operation, targets, then="shifted", purpose="shift")


def after_shift(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    release = ReleaseData.of(operation)
    percent = release.percent
    now = deps.clock.now()
    history = [*release.history, TrafficMark(at=now.isoformat(), percent=percent)]
    event(deps, operation, "traffic_shifted", percent=percent)
    if release.staging:
        return commit(deps, operation, "finalizing", history=history)
    settings = deps.config.release
    return commit(
        deps,
        operation,
        "judging",
        history=history,
        shifted_at=now.isoformat(),
        observing_since=None,
        due_at=due_in(deps, settings.warmup_s + settings.judge_interval_s),
    )


def moved_out_of_band(deps: Deps, operation: Operation) -> Operation | None:
    """Someone changed the traffic in the console: stop and say so rather than fight them.
    Returns the paused operation, or None when the traffic is as Runback left it."""
    expected = ReleaseData.of(operation).expected
    if not expected:
        return None
    try:
        state = deps.cloudrun.get_service(deps.service_ref(deps.managed_service(operation.service)))
    except CloudRunError:
        return None  # judged again at the next tick
    if state.serving() == expected:
        return None
    event(deps, operation, "out_of_band", serving=state.serving(), expected=expected)
    return commit(
        deps,
        operation,
        "paused",
        paused_from=operation.state,
        due_at=None,
        pause_reason="out_of_band",
        seen=state.serving(),
    )


def _ask_for_full_traffic(deps: Deps, operation: Operation, index: int) -> Operation:
    request_approval(deps, operation.id, Action.FULL_TRAFFIC, operation.requested_by)
    return commit(
        deps, operation, "awaiting_approval", step=index - 1, next_step=index, due_at=None
    )


def _ask_for_migration(deps: Deps, operation: Operation) -> Operation:
    """A destructive (or unknown) migration: a tech lead approves before green gets any
    traffic (the runbook: "no permitidas sin aprobación"). Green waits at 0%, smoke-tested."""
    request_approval(deps, operation.id, Action.DESTRUCTIVE_MIGRATION, operation.requested_by)
    migration = ReleaseData.of(operation).migration
    assert migration is not None, "asked only for a release with a guarded migration"
    deps.audit(
        BOT_ACTOR,
        "release.migration_approval_asked",
        "pending",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        verdict=migration.verdict,
        feature_flag=migration.flag,
    )
    return commit(
        deps, operation, "awaiting_approval", awaiting="migration", next_step=0, due_at=None
    )


def decide_full_traffic(deps: Deps, approval_id: str, user: str, approve: bool) -> Operation:
    """Approve the step the release waits for (100%, or the first step of a release with a
    destructive migration), or reject it: the decision and the release's next state are
    committed together, so a crash cannot leave an approved request on a release still
    waiting for it."""

    def transition(operation: Operation, approved: bool) -> Move:
        return _decided(operation, approved, user)

    operation = claim_decision(deps, approval_id, user, approve, "release", transition)
    refresh(deps, operation.id)
    return operation


def _decided(operation: Operation, approve: bool, user: str) -> Move:
    """The release's next state and data once the approval it waits for is decided (the data
    as the release's ``RECORD`` writes it: the stored row with the changes, validated)."""
    release = ReleaseData.of(operation)
    migration = release.awaiting == "migration"
    if not approve:
        code = "migration_rejected" if migration else "rejected"
        rejected = release.changed(awaiting=None, outcome={"code": code, "by": user})
        return Move(operation.id, "awaiting_approval", "rolling_back", _row(operation, rejected))
    by = "migration_approved_by" if migration else "full_traffic_approved_by"
    assert release.next_step is not None, "an approval is asked for a next step"
    approved = release.changed(awaiting=None, step=release.next_step, due_at=None, **{by: user})
    return Move(operation.id, "awaiting_approval", "shifting", _row(operation, approved))


def _row(operation: Operation, release: ReleaseData) -> dict[str, Any]:
    return {**operation.data, **release.stored()}


def on_decided(deps: Deps, operation: Operation, approve: bool, user: str) -> None:
    """Recovery: a decision recorded by an older bot without the release's next state."""
    if deps.store.operations.move_operation(_decided(operation, approve, user), deps.clock.now()):
        refresh(deps, operation.id)


def on_expired(deps: Deps, operation: Operation) -> None:
    deps.audit(
        BOT_ACTOR,
        "release.expired",
        "expired",
        service=operation.service,
        operation_id=operation.id,
    )
    migration = ReleaseData.of(operation).awaiting == "migration"
    code = "migration_approval_expired" if migration else "approval_expired"
    with suppress(Superseded):  # someone moved it meanwhile (an on-call rollback): it stands
        commit(deps, operation, "rolling_back", awaiting=None, outcome={"code": code})


def proceed_now(deps: Deps, operation: Operation) -> Operation:
    if ReleaseData.of(operation).percent < 100:
        return next_step(deps, operation)
    return commit(deps, operation, "finalizing", due_at=None)
