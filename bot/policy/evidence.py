"""An alert is evidence too: what decides a judgement, the freshest minutes or the alert. Pure.

A Cloud Monitoring alert carries the value its policy measured (``observed_value``) over the
condition's alignment period, at the moment the incident opened (``started_at``). It is used
with the freshest visible minutes, never instead of newer ones:

- the health check failing, or the minutes saying "roll back now", decide at once;
- minutes newer than the alert's measurement, with enough requests, decide: an old alert on
  healthy fresh numbers moves nothing;
- an alert newer than the minutes that show (Monitoring's are minutes late) decides when it is
  the more severe, so the 8% an alert measured is not averaged away by older minutes;
- too few fresh requests to judge: an alert measured within the runbook's window decides, so
  an alert far above the threshold is "roll back now", not "inconclusive, wait".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from bot.config import Thresholds
from bot.policy.gates import Judgement, Reason, Verdict

SEVERITY = {
    Verdict.PROCEED: 0,
    Verdict.INCONCLUSIVE: 1,
    Verdict.OBSERVE: 2,
    Verdict.ROLLBACK: 3,
}


class Measures(StrEnum):
    ERROR_RATE = "error_rate"  # a ratio, 0.08 = 8%
    LATENCY = "latency"  # milliseconds


class DecidedBy(StrEnum):
    MINUTES = "minutes"  # the freshest visible minutes
    ALERT = "alert"  # the alert's own measurement
    HEALTH = "health"  # the health check, made now


@dataclass(frozen=True)
class AlertEvidence:
    measures: Measures
    observed: float
    threshold: float
    at: datetime  # when the alert's measurement ends (the incident's start)
    window_s: float  # what the value was measured over (the condition's alignment period)


def alert_evidence(
    measures: str,
    observed: str,
    threshold: str,
    at: datetime | None,
    window_s: float | None,
) -> AlertEvidence | None:
    """The alert's measurement as evidence, or None when it cannot be read as one of the
    decision table's numbers: an error rate must be a ratio (its threshold at most 1, as a
    5xx ÷ all policy has it; an error *count* says nothing of a rate), a latency in ms."""
    if at is None or measures not in tuple(Measures):
        return None
    try:
        value, limit = float(observed), float(threshold)
    except ValueError:
        return None
    if not all(0 <= number < float("inf") for number in (value, limit)):
        return None
    if measures == Measures.ERROR_RATE and not (0 < limit <= 1 and value <= 1):
        return None
    return AlertEvidence(Measures(measures), value, limit, at, float(window_s or 60))


def alert_judgement(thresholds: Thresholds, alert: AlertEvidence) -> tuple[Verdict, Reason] | None:
    """The decision table's row for what the alert measured; None when it is not above a line
    (an alert alone never proves a revision healthy)."""
    if alert.measures is Measures.ERROR_RATE:
        if alert.observed > thresholds.error_rate_rollback:
            return Verdict.ROLLBACK, Reason.ERROR_RATE_HIGH
        if alert.observed > thresholds.error_rate_observe:
            return Verdict.OBSERVE, Reason.ERROR_RATE_ELEVATED
        return None
    if alert.observed > thresholds.p95_rollback_ms:
        return Verdict.ROLLBACK, Reason.P95_HIGH
    if alert.observed >= thresholds.p95_proceed_ms:
        return Verdict.OBSERVE, Reason.P95_ELEVATED
    return None


def weigh(
    thresholds: Thresholds,
    fresh: Judgement,
    minutes_end: datetime | None,
    alert: AlertEvidence | None,
    data_now: datetime,
) -> tuple[Judgement, DecidedBy]:
    """The judgement that decides, and what decided it (module docstring). ``minutes_end``: the
    end of the minutes ``fresh`` was judged on (None: none); ``data_now``: the newest data
    Monitoring shows (or the clock when it shows none)."""
    own = DecidedBy.HEALTH if Reason.HEALTHZ_FAILED in fresh.reasons else DecidedBy.MINUTES
    if fresh.verdict is Verdict.ROLLBACK or alert is None:
        return fresh, own
    row = alert_judgement(thresholds, alert)
    if row is None:
        return fresh, own
    seen = fresh.observation.requests
    if seen is not None and seen >= thresholds.min_requests:
        newer = minutes_end is None or alert.at > minutes_end
    else:
        newer = data_now - alert.at <= timedelta(minutes=thresholds.window_minutes)
    verdict, reason = row
    if not newer or SEVERITY[verdict] <= SEVERITY[fresh.verdict]:
        return fresh, own
    return replace(fresh, verdict=verdict, reasons=(reason,)), DecidedBy.ALERT
