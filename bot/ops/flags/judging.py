"""After 100%: the new revision watched for ``thresholds.observe_minutes`` with the runbook's
decision table (bot/policy/gates.py), on Cloud Monitoring's numbers and the health path.

"Roll back now" at any judgement moves 100% back to the previous revision at once. The observe
band starts an observation; still above when it ends is a rollback too. Each judgement is on the
freshest minutes (bot/ops/metrics_window.py), and only when Monitoring shows a new one. The
watch ends once Monitoring shows minutes up to the end of the window (Cloud Run's arrive
minutes late); a verdict that is still inconclusive then keeps the flag, and the card says it
was no pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.ops.context import Deps
from bot.ops.flags.record import commit, end
from bot.ops.flags.states import FlagData
from bot.ops.health import probe_health
from bot.ops.metrics_window import Decision, decide, recorded, waiting
from bot.ops.operation_data import moment
from bot.ops.stepping import due_in, step_ended
from bot.policy.gates import Verdict
from bot.store import Operation

# How long past the window to wait for Monitoring's minutes before ending inconclusive.
MONITORING_LAG_LIMIT = timedelta(minutes=10)


def step_watch(deps: Deps, operation: Operation) -> Operation:
    decision = _judge(deps, operation)
    if decision.waiting:  # nothing new to judge: no judgement to record, the card says so
        if _monitoring_too_late(deps, operation):
            return _keep(deps, operation, _last_verdict(operation))
        interval = deps.config.release.judge_interval_s
        return commit(deps, operation, **waiting(deps, decision, interval))
    _, judged = recorded(deps, operation, decision, keep=100)
    operation = commit(deps, operation, **judged)
    verdict = decision.verdict
    assert verdict is not None and decision.judgement is not None
    if verdict is Verdict.ROLLBACK:
        reasons = [str(r) for r in decision.judgement.reasons]
        outcome = {"code": "judged_bad", "reasons": reasons}
        return commit(deps, operation, "rolling_back", due_at=None, outcome=outcome)
    over = _seen_to_the_end(operation, decision) or _monitoring_too_late(deps, operation)
    if over and verdict is not Verdict.OBSERVE:
        return _keep(deps, operation, verdict)
    return commit(deps, operation, due_at=due_in(deps, deps.config.release.judge_interval_s))


def _keep(deps: Deps, operation: Operation, verdict: Verdict | None) -> Operation:
    """The watch is over: the flag stays (a verdict short of a pass says so)."""
    now = deps.clock.now()
    operation = commit(deps, operation, waiting=None, **step_ended(operation, "watch", now, "done"))
    _record_serving(deps, operation, now)
    code = "kept" if verdict is Verdict.PROCEED else "kept_inconclusive"
    return end(deps, operation, "succeeded", {"code": code})


def _last_verdict(operation: Operation) -> Verdict | None:
    judgements = FlagData.of(operation).judgements
    return Verdict(judgements[-1]["verdict"]) if judgements else None


def _record_serving(deps: Deps, operation: Operation, now: datetime) -> None:
    """The flag revision is the one serving now, the one before it the way back: what a later
    `/rollback` of the service goes to (the flag as it was), as after a release."""
    before = now - timedelta(microseconds=1)
    deps.store.serving.record_serving(
        operation.service, operation.from_revision, "served", before, operation.id
    )
    deps.store.serving.record_serving(
        operation.service, operation.to_revision, "served", now, operation.id
    )


def _judge(deps: Deps, operation: Operation) -> Decision:
    service = deps.managed_service(operation.service)
    ref = deps.service_ref(service)
    flip = FlagData.of(operation)
    return decide(
        deps,
        ref,
        operation.to_revision,
        lambda: probe_health(deps, service, flip.uri)[1],
        not_before=_time_once_shifted(flip.shifted_at),
        judged_until=moment(flip.judged_until),
        observing=moment(flip.observing_since),
    )


def _time_once_shifted(text: str | None) -> datetime:
    """A time a flip keeps once it shifted (it watches only then)."""
    assert text is not None, "a flip watches only once it shifted"
    return datetime.fromisoformat(text)


def _watch_until(operation: Operation) -> datetime:
    return _time_once_shifted(FlagData.of(operation).watch_until)


def _seen_to_the_end(operation: Operation, decision: Decision) -> bool:
    """Monitoring shows the minutes up to the end of the watch (data time, not the clock)."""
    window = decision.reading.window
    return window is not None and window.end >= _watch_until(operation)


def _monitoring_too_late(deps: Deps, operation: Operation) -> bool:
    return deps.clock.now() >= _watch_until(operation) + MONITORING_LAG_LIMIT
