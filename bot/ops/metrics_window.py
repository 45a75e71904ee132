"""Judgements on the freshest numbers: the one module releases, flag watches, restores and
incidents judge a revision through.

The rule (pure, in bot/policy): the newest complete minutes Monitoring shows that hold the
minimum sample count, extending back only as far as needed, never past the runbook's window
(bot/policy/windows.py); an alert's own measurement weighed with them (bot/policy/evidence.py);
the decision table (bot/policy/gates.py) across judgements, an observation ending by data time.
A judgement needs something new: a minute Monitoring did not show at the last one, a failing
health check, or (at an incident's first judgement) the alert. Otherwise there is no judgement
to record or post, only "waiting for Monitoring's next minute".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.health import health_observation
from bot.ops.operation_data import moment
from bot.ops.stepping import due_in
from bot.policy.evidence import AlertEvidence, DecidedBy, weigh
from bot.policy.gates import Judgement, Observation, Reason, Verdict, judge, observed_verdict
from bot.policy.windows import FreshWindow, freshest_window, is_new, newest_minute
from bot.ports import ProbeResult, ServiceRef
from bot.store import Operation

# Look this far back for the newest visible minute (Cloud Run's arrive up to ~3 minutes late).
SEARCH_BACK = timedelta(minutes=15)
# How soon a check that found nothing new looks again (at most): Monitoring's next minute shows
# up at some second of the next minute, and each check probes the health path too.
WAITING_RECHECK_S = 15.0

Numbers = tuple[int | None, int | None, float | None]  # requests, errors, P95 ms

log = logging.getLogger("runback.metrics")


@dataclass(frozen=True)
class Reading:
    """What Monitoring shows of a revision now."""

    newest: datetime | None  # the end of the newest visible minute (data time)
    window: FreshWindow | None  # the minutes to decide on; None: none may count yet
    p95_ms: float | None = None
    unreadable: bool = False  # Monitoring did not answer: no data, never a pass

    @property
    def numbers(self) -> Numbers:
        if self.unreadable:
            return None, None, None
        if self.window is None:
            return 0, 0, None
        return self.window.requests, self.window.errors, self.p95_ms


def read_fresh(
    deps: Deps,
    ref: ServiceRef,
    revision: str,
    not_before: datetime | None = None,
    with_p95: bool = True,
) -> Reading:
    """The freshest window of ``revision`` that can decide, minutes from ``not_before`` on;
    its P95 too, unless ``with_p95`` is False (``with_p95_of`` reads it when it is wanted)."""
    now = deps.clock.now()
    thresholds = deps.config.thresholds
    try:
        minutes = deps.metrics.minutes(ref, revision, now - SEARCH_BACK, now)
    except Exception as error:  # Monitoring faults are never a pass
        log.warning("Monitoring unreadable for %s: %s", revision, error)
        return Reading(None, None, unreadable=True)
    window = freshest_window(
        minutes,
        min_requests=thresholds.min_requests,
        longest=timedelta(minutes=thresholds.window_minutes),
        not_before=not_before,
    )
    reading = Reading(newest_minute(minutes), window)
    return with_p95_of(deps, ref, revision, reading) if with_p95 else reading


def with_p95_of(deps: Deps, ref: ServiceRef, revision: str, reading: Reading) -> Reading:
    """``reading`` with the P95 of its window (the latency query; none without requests)."""
    window = reading.window
    if window is None or not window.requests:
        return reading
    try:
        metrics = deps.metrics.revision_metrics(ref, revision, window.start, window.end)
    except Exception as error:
        log.warning("Monitoring unreadable for %s: %s", revision, error)
        return Reading(None, None, unreadable=True)
    return replace(reading, p95_ms=metrics.p95_ms)


@dataclass(frozen=True)
class Decision:
    """A judgement of a revision and the verdict across judgements, or nothing new to judge."""

    now: datetime
    reading: Reading
    judgement: Judgement | None  # None: waiting for Monitoring's next minute
    verdict: Verdict | None
    decided_by: DecidedBy | None
    observing_since: datetime | None  # data time the observation began, after this judgement
    alert: AlertEvidence | None = None

    @property
    def waiting(self) -> bool:
        return self.judgement is None

    def next_check_in(self, every_s: float) -> float:
        """Seconds to the next check: ``every_s`` after a judgement, sooner while waiting."""
        return min(every_s, WAITING_RECHECK_S) if self.waiting else every_s

    def facts(self) -> dict[str, Any]:
        """The judgement as plain data for the record (timeline, audit, cards)."""
        assert self.judgement is not None and self.verdict is not None
        window = self.reading.window
        facts: dict[str, Any] = {
            "at": self.now.isoformat(),
            "verdict": str(self.verdict),
            **self.judgement.numbers(),
            "window_start": (window.start if window else self.now).isoformat(),
            "window_end": (window.end if window else self.now).isoformat(),
            "window_s": (window.end - window.start).total_seconds() if window else 0.0,
            "window_minutes": window.minutes if window else 0,
            "decided_by": str(self.decided_by) if self.decided_by else "",
        }
        if self.decided_by is DecidedBy.ALERT and self.alert is not None:
            facts["alert"] = {
                "measures": str(self.alert.measures),
                "observed": self.alert.observed,
                "window_s": self.alert.window_s,
                "at": self.alert.at.isoformat(),
            }
        return facts

    def waiting_facts(self) -> dict[str, Any]:
        """What a card says while waiting: the newest minute and how far behind it is."""
        newest = self.reading.newest
        behind = (self.now - newest).total_seconds() if newest else None
        return {
            "since": self.now.isoformat(),
            "newest": newest.isoformat() if newest else None,
            "behind_s": behind,
        }


def decide(
    deps: Deps,
    ref: ServiceRef,
    revision: str,
    probe: Callable[[], ProbeResult],
    *,
    not_before: datetime | None,
    judged_until: datetime | None,
    observing: datetime | None,
    alert: AlertEvidence | None = None,
) -> Decision:
    """Judge ``revision`` on its freshest minutes from ``not_before`` on (while observing, from
    when the observation began: "still above?" is asked of the minutes since), its health
    (``probe``, made once Monitoring has answered) and, for an incident, its ``alert``.
    ``judged_until``: the end of the minutes the last judgement had (None: the first one)."""
    now = deps.clock.now()
    counted_from = max((m for m in (not_before, observing) if m is not None), default=None)
    reading = read_fresh(deps, ref, revision, counted_from, with_p95=False)
    window_end = reading.window.end if reading.window else None
    new_minute = window_end is not None and is_new(window_end, judged_until)
    if new_minute:  # the latency query only for minutes that will be judged
        reading = with_p95_of(deps, ref, revision, reading)
        window_end = reading.window.end if reading.window else None
    fresh = judge(deps.config.thresholds, health_observation(probe(), *reading.numbers))
    # data time stands still while Monitoring shows nothing (new): an observation never ends
    # on reads that found nothing
    data_now = window_end or reading.newest or judged_until or observing or now
    judgement, weighed = weigh(deps.config.thresholds, fresh, window_end, alert, data_now)
    decided_by: DecidedBy | None = weighed
    something_new = (
        reading.unreadable
        or new_minute
        or Reason.HEALTHZ_FAILED in fresh.reasons
        or (judged_until is None and decided_by is DecidedBy.ALERT)
    )
    if not something_new:
        return Decision(now, reading, None, None, None, observing, alert)
    if reading.unreadable and decided_by is DecidedBy.MINUTES:
        decided_by = None  # no minutes decided anything: Monitoring did not answer
    verdict = observed_verdict(deps.config.thresholds, judgement, observing, data_now)
    observing = (observing or data_now) if verdict is Verdict.OBSERVE else None
    return Decision(now, reading, judgement, verdict, decided_by, observing, alert)


def unreadable(deps: Deps, now: datetime, observing: datetime | None) -> Decision:
    """The judgement when the revision to judge cannot even be found (Cloud Run did not
    answer): no data, which is never a pass."""
    judgement = judge(deps.config.thresholds, Observation(None, None, None, None))
    data_now = observing or now
    verdict = observed_verdict(deps.config.thresholds, judgement, observing, data_now)
    since = observing if verdict is Verdict.OBSERVE else None
    return Decision(now, Reading(None, None, unreadable=True), judgement, verdict, None, since)


def recorded(
    deps: Deps, operation: Operation, decision: Decision, *, keep: int, **shown: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A judgement of ``operation``'s new revision (a release's step, a flip's watch), audited as
    ``{kind}.judged``: its numbers (``shown`` first) and the data to commit with them: the newest
    ``keep`` judgements, ``judged_until`` (the end of the minutes it had; as it was when only the
    health check was new), ``observing_since``, and no ``waiting`` any more."""
    numbers = {**shown, **decision.facts()}
    deps.audit(
        BOT_ACTOR,
        f"{operation.kind}.judged",
        str(decision.verdict),
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        **numbers,
    )
    since = decision.observing_since
    data = {
        "judgements": [*operation.data.get("judgements", []), numbers][-keep:],
        "judged_until": (
            numbers["window_end"]
            if decision.reading.window
            else operation.data.get("judged_until")  # the health check alone: no new minute
        ),
        "observing_since": since.isoformat() if since else None,
        "waiting": None,
    }
    return numbers, data


def waiting(deps: Deps, decision: Decision, every_s: float) -> dict[str, Any]:
    """Nothing new to judge (no minute Monitoring did not show at the last judgement): the data
    to commit, what the card says it waits for and when to look again (sooner than
    ``every_s``, the interval between judgements)."""
    return {
        "waiting": decision.waiting_facts(),
        "due_at": due_in(deps, decision.next_check_in(every_s)),
    }


def observing_since(data: dict[str, Any]) -> datetime | None:
    """When the decision table's "observe" began for an operation (data time)."""
    return moment(data.get("observing_since"))


def judged_until(data: dict[str, Any]) -> datetime | None:
    """The end of the minutes an operation's last judgement had (its ``judged_until``)."""
    return moment(data.get("judged_until"))
