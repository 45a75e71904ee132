"""The restore's last step, judged: the restored revision at 100% against the decision table,
through bot/ops/metrics_window.py as a release's 100% step is (bot/ops/release/judging.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.ops.context import Deps
from bot.ops.health import probe_health
from bot.ops.metrics_window import decide, recorded, waiting
from bot.ops.operation_data import moment
from bot.ops.restore.record import back, commit, done, due, end
from bot.ops.restore.states import RestoreData
from bot.policy.gates import Verdict
from bot.store import Operation

KEPT_JUDGEMENTS = 60  # the newest judgements a restore keeps (an hour of one a minute)


def step_judge(deps: Deps, operation: Operation) -> Operation:
    """The decision table on the restored revision, as a release's last step is judged
    (bot/ops/metrics_window.py: its freshest minutes since the warm-up, a judgement only when
    Monitoring shows a minute it did not show at the last one, or the health check fails): it
    must pass for ``release.validation_s`` after the warm-up (one good window is not enough),
    and a verdict of "roll back" at any judgement goes back to the old revision. Waiting for
    Monitoring counts as too little data to judge, except while an observation is under way:
    an observation ends by data time (issue 17), never by how many checks found nothing new."""
    data = RestoreData.of(operation)
    service = deps.managed_service(operation.service)
    release = deps.config.release
    assert data.shifted_at is not None, "the shift step wrote it"
    shifted = datetime.fromisoformat(data.shifted_at)
    decision = decide(
        deps,
        deps.service_ref(service),
        operation.to_revision,
        lambda: probe_health(deps, service, data.service_uri)[1],
        not_before=shifted + timedelta(seconds=release.warmup_s),
        judged_until=moment(data.judged_until),
        observing=moment(data.observing_since),
    )
    waited = (decision.now - shifted).total_seconds()
    if decision.waiting:
        if waited >= release.inconclusive_limit_s and decision.observing_since is None:
            return _succeed(deps, operation, verified=False)
        return commit(deps, operation, **waiting(deps, decision, release.judge_interval_s))
    numbers, judged = recorded(deps, operation, decision, keep=KEPT_JUDGEMENTS)
    operation = commit(deps, operation, **judged, last=numbers)
    if decision.verdict is Verdict.ROLLBACK:
        return back(deps, operation, "verify", ", ".join(numbers["reasons"]))
    validated = waited >= release.warmup_s + release.validation_s
    if decision.verdict is Verdict.PROCEED and validated:
        return _succeed(deps, operation, verified=True)
    if decision.verdict is Verdict.INCONCLUSIVE and waited >= release.inconclusive_limit_s:
        return _succeed(deps, operation, verified=False)
    return commit(deps, operation, due_at=due(deps, release.judge_interval_s))


def _succeed(deps: Deps, operation: Operation, verified: bool) -> Operation:
    operation = done(deps, operation, "verify", verified=verified)
    return end(deps, operation, "succeeded", verified=verified)
