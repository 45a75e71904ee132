"""The runbook's decision table for a revision ("Incidentes: Cuándo Rollback"). Pure.

| observation                      | verdict                                         |
|----------------------------------|-------------------------------------------------|
| /healthz fails                   | roll back now                                   |
| error rate > 5%                  | roll back now                                   |
| P95 latency > 2 s                | roll back now                                   |
| 1% < error rate <= 5%            | observe, then roll back if still above 1%       |
| 800 ms <= P95 <= 2 s             | observe, then roll back if not recovered        |
| error rate < 1% and P95 < 800 ms | proceed                                         |
| too few requests, or no data     | inconclusive (never a pass)                     |

A health check that cannot be made (the path is reserved by Cloud Run's front end, or Runback
may not invoke the service) is a configuration problem: never "roll back now" by itself; the
numbers still decide a rollback or an observation, but never a pass (inconclusive instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.config import Thresholds


class Verdict(StrEnum):
    ROLLBACK = "rollback"
    OBSERVE = "observe"
    PROCEED = "proceed"
    INCONCLUSIVE = "inconclusive"


class Reason(StrEnum):
    HEALTHZ_FAILED = "healthz_failed"
    ERROR_RATE_HIGH = "error_rate_high"  # > rollback threshold
    P95_HIGH = "p95_high"  # > rollback threshold
    ERROR_RATE_ELEVATED = "error_rate_elevated"  # observe band
    P95_ELEVATED = "p95_elevated"  # observe band
    TOO_FEW_REQUESTS = "too_few_requests"
    NO_DATA = "no_data"  # Monitoring failed or returned nothing
    HEALTHY = "healthy"
    # the health check could not be made (configuration problems, see the module docstring)
    HEALTH_PATH_RESERVED = "health_path_reserved"
    INGRESS_INTERNAL = "ingress_internal"
    INVOKER_DENIED = "invoker_denied"
    NO_ID_TOKEN = "no_id_token"


HEALTH_PROBLEMS = {
    "reserved_path": Reason.HEALTH_PATH_RESERVED,
    "ingress_internal": Reason.INGRESS_INTERNAL,
    "invoker_denied": Reason.INVOKER_DENIED,
    "no_id_token": Reason.NO_ID_TOKEN,
}


@dataclass(frozen=True)
class Observation:
    """What was measured about one revision over one window."""

    healthz_ok: bool | None  # None: not probed
    requests: int | None  # None: Monitoring could not be read
    errors: int | None
    p95_ms: float | None
    health_problem: Reason | None = None  # the health check could not be made; healthz_ok None

    @property
    def error_rate(self) -> float | None:
        if not self.requests or self.errors is None:
            return None
        return self.errors / self.requests


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reasons: tuple[Reason, ...]
    observation: Observation

    def numbers(self) -> dict[str, Any]:
        """What was seen and why, as plain data for the record (timeline, audit, cards)."""
        seen = self.observation
        return {
            "reasons": [str(r) for r in self.reasons],
            "requests": seen.requests,
            "errors": seen.errors,
            "error_rate": seen.error_rate,
            "p95_ms": seen.p95_ms,
            "healthz_ok": seen.healthz_ok,
        }


def judge(thresholds: Thresholds, observation: Observation) -> Judgement:
    """Apply the decision table. The most severe row that matches wins."""
    rollback = _rollback_reasons(thresholds, observation)
    if rollback:
        return Judgement(Verdict.ROLLBACK, rollback, observation)
    health = (observation.health_problem,) if observation.health_problem else ()
    if observation.requests is None:
        return Judgement(Verdict.INCONCLUSIVE, (*health, Reason.NO_DATA), observation)
    if observation.requests < thresholds.min_requests:
        return Judgement(Verdict.INCONCLUSIVE, (*health, Reason.TOO_FEW_REQUESTS), observation)
    observe = _observe_reasons(thresholds, observation)
    if observe:
        return Judgement(Verdict.OBSERVE, observe, observation)
    if observation.p95_ms is None:
        return Judgement(Verdict.INCONCLUSIVE, (*health, Reason.NO_DATA), observation)
    if health:
        return Judgement(Verdict.INCONCLUSIVE, health, observation)
    return Judgement(Verdict.PROCEED, (Reason.HEALTHY,), observation)


def _rollback_reasons(thresholds: Thresholds, seen: Observation) -> tuple[Reason, ...]:
    reasons = []
    if seen.healthz_ok is False:
        reasons.append(Reason.HEALTHZ_FAILED)
    rate = seen.error_rate
    enough = seen.requests is not None and seen.requests >= thresholds.min_requests
    if rate is not None and enough and rate > thresholds.error_rate_rollback:
        reasons.append(Reason.ERROR_RATE_HIGH)
    if seen.p95_ms is not None and enough and seen.p95_ms > thresholds.p95_rollback_ms:
        reasons.append(Reason.P95_HIGH)
    return tuple(reasons)


def _observe_reasons(thresholds: Thresholds, seen: Observation) -> tuple[Reason, ...]:
    reasons = []
    rate = seen.error_rate
    if rate is not None and rate > thresholds.error_rate_observe:
        reasons.append(Reason.ERROR_RATE_ELEVATED)
    if seen.p95_ms is not None and seen.p95_ms >= thresholds.p95_proceed_ms:
        reasons.append(Reason.P95_ELEVATED)
    return tuple(reasons)


def after_observation(
    thresholds: Thresholds, judgement: Judgement, observing_since: datetime, now: datetime
) -> Verdict:
    """While observing: keep observing until the window ends, then roll back unless the
    revision has recovered. Inconclusive data at the end of the window is not a recovery."""
    if judgement.verdict in (Verdict.ROLLBACK, Verdict.PROCEED):
        return judgement.verdict
    window_over = now - observing_since >= timedelta(minutes=thresholds.observe_minutes)
    return Verdict.ROLLBACK if window_over else Verdict.OBSERVE


def observed_verdict(
    thresholds: Thresholds, judgement: Judgement, observing_since: datetime | None, now: datetime
) -> Verdict:
    """The decision table across judgements: once a revision is observed (``observing_since``),
    ``after_observation`` decides; inconclusive data while observing keeps observing."""
    if judgement.verdict is not Verdict.OBSERVE and observing_since is None:
        return judgement.verdict
    verdict = after_observation(thresholds, judgement, observing_since or now, now)
    if judgement.verdict is Verdict.INCONCLUSIVE and verdict is Verdict.OBSERVE:
        return Verdict.OBSERVE
    return verdict
