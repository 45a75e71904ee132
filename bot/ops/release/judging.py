"""Phase 3, judged: green against the decision table after each step's warm-up."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.health import health_observation
from bot.ops.metrics_window import Window, judged_numbers, observing_since
from bot.ops.release.canary import moved_out_of_band, next_step
from bot.ops.release.green import probe_green
from bot.ops.release.record import commit
from bot.ops.release.view import post_in_thread
from bot.ops.stepping import due_in
from bot.policy.gates import Judgement, Verdict, judge, observed_verdict
from bot.store import Operation


def step_judge(deps: Deps, operation: Operation) -> Operation:
    paused = moved_out_of_band(deps, operation)
    if paused is not None:
        return paused
    judgement, window = judge_green_in_window(deps, operation)
    verdict = observed_verdict(
        deps.config.thresholds, judgement, observing_since(operation.data), deps.clock.now()
    )
    operation = _record_judgement(deps, operation, judgement, verdict, window)
    if verdict is Verdict.ROLLBACK:
        return commit(
            deps,
            operation,
            "rolling_back",
            due_at=None,
            outcome={"code": "judged_bad", "reasons": [str(r) for r in judgement.reasons]},
        )
    if verdict is Verdict.PROCEED:
        return _proceed(deps, operation)
    if verdict is Verdict.INCONCLUSIVE and _inconclusive_too_long(deps, operation):
        return commit(deps, operation, "needs_human", due_at=None)
    return commit(deps, operation, due_at=due_in(deps, deps.config.release.judge_interval_s))


def judge_green(deps: Deps, operation: Operation) -> Judgement:
    return judge_green_in_window(deps, operation)[0]


def judge_green_in_window(deps: Deps, operation: Operation) -> tuple[Judgement, Window | None]:
    """The decision table on green, and the window of Monitoring data it was judged on."""
    service = deps.managed_service(operation.service)
    ref = deps.service_ref(service)
    start = datetime.fromisoformat(operation.data["step_started"]) + timedelta(
        seconds=deps.config.release.warmup_s
    )
    numbers, window = judged_numbers(
        deps, ref, operation.to_revision, start, observing_since(operation.data)
    )
    _, probe = probe_green(deps, operation)
    return judge(deps.config.thresholds, health_observation(probe, *numbers)), window


def _record_judgement(
    deps: Deps,
    operation: Operation,
    judgement: Judgement,
    verdict: Verdict,
    window: Window | None = None,
) -> Operation:
    now = deps.clock.now()
    percent = operation.data["steps"][operation.data["step"]]
    start, end = window or (now, now)  # the minutes Monitoring showed (none yet: empty)
    numbers = {
        "at": now.isoformat(),
        "percent": percent,
        "verdict": str(verdict),
        **judgement.numbers(),
        "window_start": start.isoformat(),
        "window_s": max((end - start).total_seconds(), 0.0),
    }
    observing = operation.data.get("observing_since")
    if verdict is Verdict.OBSERVE and not observing:
        observing = now.isoformat()
    elif verdict is not Verdict.OBSERVE:
        observing = None
    inconclusive = operation.data.get("inconclusive_since")
    if judgement.verdict is Verdict.INCONCLUSIVE:
        inconclusive = inconclusive or now.isoformat()
    else:
        inconclusive = None
    judgements = [*operation.data["judgements"], numbers][-200:]
    deps.audit(
        BOT_ACTOR,
        "release.judged",
        str(verdict),
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        **numbers,
    )
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
    return commit(
        deps,
        operation,
        judgements=judgements,
        observing_since=observing,
        inconclusive_since=inconclusive,
    )


def _inconclusive_too_long(deps: Deps, operation: Operation) -> bool:
    since = operation.data.get("inconclusive_since")
    if not since:
        return False
    waited = (deps.clock.now() - datetime.fromisoformat(since)).total_seconds()
    return waited >= deps.config.release.inconclusive_limit_s


def _proceed(deps: Deps, operation: Operation) -> Operation:
    percent = operation.data["steps"][operation.data["step"]]
    if percent < 100:
        return next_step(deps, operation)
    started = datetime.fromisoformat(operation.data["step_started"])
    validated = (deps.clock.now() - started).total_seconds() >= (
        deps.config.release.warmup_s + deps.config.release.validation_s
    )
    if validated:
        return commit(deps, operation, "finalizing", due_at=None)
    return commit(deps, operation, due_at=due_in(deps, deps.config.release.judge_interval_s))
