"""After 100%: the new revision watched for ``thresholds.observe_minutes`` with the runbook's
decision table (bot/policy/gates.py), on Cloud Monitoring's numbers and the health path.

"Roll back now" at any judgement moves 100% back to the previous revision at once. The observe
band starts an observation; still above when it ends is a rollback too. The watch ends once
Monitoring shows minutes up to the end of the window (Cloud Run's arrive minutes late); a
verdict that is still inconclusive then keeps the flag, and the card says it was no pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.flags.record import commit, end, step_ended
from bot.ops.health import health_observation, probe_health
from bot.ops.metrics_window import Window, judged_numbers, observing_since
from bot.ops.stepping import due_in
from bot.policy.gates import Judgement, Verdict, judge, observed_verdict
from bot.store import Operation

# How long past the window to wait for Monitoring's minutes before ending inconclusive.
MONITORING_LAG_LIMIT = timedelta(minutes=10)


def step_watch(deps: Deps, operation: Operation) -> Operation:
    judgement, window = _judge(deps, operation)
    verdict = observed_verdict(
        deps.config.thresholds, judgement, observing_since(operation.data), deps.clock.now()
    )
    operation = _record(deps, operation, judgement, verdict, window)
    if verdict is Verdict.ROLLBACK:
        reasons = [str(r) for r in judgement.reasons]
        outcome = {"code": "judged_bad", "reasons": reasons}
        return commit(deps, operation, "rolling_back", due_at=None, outcome=outcome)
    if _watch_over(deps, operation, window) and verdict is not Verdict.OBSERVE:
        now = deps.clock.now()
        operation = commit(deps, operation, **step_ended(operation, "watch", now, "done"))
        _record_serving(deps, operation, now)
        code = "kept" if verdict is Verdict.PROCEED else "kept_inconclusive"
        return end(deps, operation, "succeeded", {"code": code})
    return commit(deps, operation, due_at=due_in(deps, deps.config.release.judge_interval_s))


def _record_serving(deps: Deps, operation: Operation, now: datetime) -> None:
    """The flag revision is the one serving now, the one before it the way back: what a later
    `/rollback` of the service goes to (the flag as it was), as after a release."""
    before = now - timedelta(microseconds=1)
    deps.store.record_serving(
        operation.service, operation.from_revision, "served", before, operation.id
    )
    deps.store.record_serving(operation.service, operation.to_revision, "served", now, operation.id)


def _judge(deps: Deps, operation: Operation) -> tuple[Judgement, Window | None]:
    service = deps.managed_service(operation.service)
    ref = deps.service_ref(service)
    start = datetime.fromisoformat(operation.data["shifted_at"])
    numbers, window = judged_numbers(
        deps, ref, operation.to_revision, start, observing_since(operation.data)
    )
    _, probe = probe_health(deps, service, operation.data.get("uri", ""))
    return judge(deps.config.thresholds, health_observation(probe, *numbers)), window


def _watch_over(deps: Deps, operation: Operation, window: Window | None) -> bool:
    until = datetime.fromisoformat(operation.data["watch_until"])
    if deps.clock.now() < until:
        return False
    seen_to_the_end = window is not None and window[1] >= until
    return seen_to_the_end or deps.clock.now() >= until + MONITORING_LAG_LIMIT


def _record(
    deps: Deps,
    operation: Operation,
    judgement: Judgement,
    verdict: Verdict,
    window: Window | None,
) -> Operation:
    now = deps.clock.now()
    start, stop = window or (now, now)
    numbers = {
        "at": now.isoformat(),
        "verdict": str(verdict),
        **judgement.numbers(),
        "window_start": start.isoformat(),
        "window_s": max((stop - start).total_seconds(), 0.0),
    }
    observing = operation.data.get("observing_since")
    if verdict is Verdict.OBSERVE and not observing:
        observing = now.isoformat()
    elif verdict is not Verdict.OBSERVE:
        observing = None
    deps.audit(
        BOT_ACTOR,
        "flag.judged",
        str(verdict),
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        **numbers,
    )
    judgements = [*operation.data.get("judgements", []), numbers][-100:]
    return commit(deps, operation, judgements=judgements, observing_since=observing)
