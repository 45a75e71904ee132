"""Phase 3, judged: green against the decision table after each step's warm-up."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.ops.context import Deps
from bot.ops.metrics_window import Decision, decide, recorded, waiting
from bot.ops.operation_data import moment
from bot.ops.release.canary import moved_out_of_band, next_step
from bot.ops.release.green import probe_green
from bot.ops.release.record import commit
from bot.ops.release.states import ReleaseData
from bot.ops.release.view import post_in_thread
from bot.ops.stepping import due_in
from bot.policy.gates import Verdict
from bot.store import Operation


def step_judge(deps: Deps, operation: Operation) -> Operation:
    paused = moved_out_of_band(deps, operation)
    if paused is not None:
        return paused
    decision = judge_green(deps, operation)
    if decision.waiting:
        return _wait(deps, operation, decision)
    operation = _record_judgement(deps, operation, decision)
    verdict = decision.verdict
    assert decision.judgement is not None
    if verdict is Verdict.ROLLBACK:
        return commit(
            deps,
            operation,
            "rolling_back",
            due_at=None,
            outcome={
                "code": "judged_bad",
                "reasons": [str(r) for r in decision.judgement.reasons],
            },
        )
    if verdict is Verdict.PROCEED:
        return _proceed(deps, operation)
    if verdict is Verdict.INCONCLUSIVE and _inconclusive_too_long(deps, operation):
        return commit(deps, operation, "needs_human", due_at=None)
    return commit(deps, operation, due_at=due_in(deps, deps.config.release.judge_interval_s))


def judge_green(deps: Deps, operation: Operation) -> Decision:
    """The decision table on green's freshest minutes since the step's warm-up, and its health
    on the tag URL (bot/ops/metrics_window.py)."""
    service = deps.managed_service(operation.service)
    ref = deps.service_ref(service)
    release = ReleaseData.of(operation)
    start = _shifted_at(release) + timedelta(seconds=deps.config.release.warmup_s)
    return decide(
        deps,
        ref,
        operation.to_revision,
        lambda: probe_green(deps, operation)[1],
        not_before=start,
        judged_until=moment(release.judged_until),
        observing=moment(release.observing_since),
    )


def _shifted_at(release: ReleaseData) -> datetime:
    """When the step's traffic was applied (a release judges only then)."""
    assert release.shifted_at is not None, "a release judges only once a step shifted"
    return datetime.fromisoformat(release.shifted_at)


def _wait(deps: Deps, operation: Operation, decision: Decision) -> Operation:
    """No minute Monitoring did not show at the last judgement: nothing to judge, record or
    post; the card says what it waits for. Waiting counts as too little data to judge."""
    inconclusive = ReleaseData.of(operation).inconclusive_since or decision.now.isoformat()
    waited = (decision.now - datetime.fromisoformat(inconclusive)).total_seconds()
    if waited >= deps.config.release.inconclusive_limit_s:
        return commit(
            deps,
            operation,
            "needs_human",
            due_at=None,
            waiting=decision.waiting_facts(),
            inconclusive_since=inconclusive,
        )
    interval = deps.config.release.judge_interval_s
    return commit(
        deps, operation, **waiting(deps, decision, interval), inconclusive_since=inconclusive
    )


def _record_judgement(deps: Deps, operation: Operation, decision: Decision) -> Operation:
    assert decision.judgement is not None
    release = ReleaseData.of(operation)
    percent, inconclusive = release.percent, release.inconclusive_since
    if decision.judgement.verdict is Verdict.INCONCLUSIVE:
        inconclusive = inconclusive or decision.now.isoformat()
    else:
        inconclusive = None
    numbers, judged = recorded(deps, operation, decision, keep=200, percent=percent)
    post_in_thread(
        deps,
        operation,
        deps.renderer.message(
            "release_judgement",
            j=numbers,
            thresholds=deps.config.thresholds.model_dump(),
            revision=operation.to_revision,
        ),
    )
    return commit(deps, operation, **judged, inconclusive_since=inconclusive)


def _inconclusive_too_long(deps: Deps, operation: Operation) -> bool:
    since = ReleaseData.of(operation).inconclusive_since
    if not since:
        return False
    waited = (deps.clock.now() - datetime.fromisoformat(since)).total_seconds()
    return waited >= deps.config.release.inconclusive_limit_s


def _proceed(deps: Deps, operation: Operation) -> Operation:
    release = ReleaseData.of(operation)
    if release.percent < 100:
        return next_step(deps, operation)
    started = _shifted_at(release)
    validated = (deps.clock.now() - started).total_seconds() >= (
        deps.config.release.warmup_s + deps.config.release.validation_s
    )
    if validated:
        return commit(deps, operation, "finalizing", due_at=None)
    return commit(deps, operation, due_at=due_in(deps, deps.config.release.judge_interval_s))
