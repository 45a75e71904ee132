"""The runbook's decision table, row by row and at every boundary (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Thresholds
from bot.policy.gates import (
    Observation,
    Reason,
    Verdict,
    after_observation,
    judge,
    observed_verdict,
)

T = Thresholds()  # the runbook's numbers: 5% / 1% errors, 2 s / 800 ms P95, 50 requests


def seen(
    rate: float | None = 0.0,
    p95: float | None = 100.0,
    requests: int | None = 1000,
    healthz: bool | None = True,
) -> Observation:
    errors = None if rate is None or requests is None else round(rate * requests)
    return Observation(healthz_ok=healthz, requests=requests, errors=errors, p95_ms=p95)


@pytest.mark.parametrize(
    ("observation", "verdict", "reasons"),
    [
        # /healthz fails => roll back now, whatever the numbers (even with no traffic)
        (seen(healthz=False), Verdict.ROLLBACK, {Reason.HEALTHZ_FAILED}),
        (seen(healthz=False, requests=0), Verdict.ROLLBACK, {Reason.HEALTHZ_FAILED}),
        # error rate > 5% => roll back now
        (seen(rate=0.051), Verdict.ROLLBACK, {Reason.ERROR_RATE_HIGH}),
        (seen(rate=0.50), Verdict.ROLLBACK, {Reason.ERROR_RATE_HIGH}),
        # P95 > 2 s => roll back now
        (seen(p95=2001), Verdict.ROLLBACK, {Reason.P95_HIGH}),
        (
            seen(rate=0.2, p95=3000, healthz=False),
            Verdict.ROLLBACK,
            {Reason.HEALTHZ_FAILED, Reason.ERROR_RATE_HIGH, Reason.P95_HIGH},
        ),
        # 1% < error rate <= 5% => observe
        (seen(rate=0.05), Verdict.OBSERVE, {Reason.ERROR_RATE_ELEVATED}),
        (seen(rate=0.011), Verdict.OBSERVE, {Reason.ERROR_RATE_ELEVATED}),
        # 800 ms <= P95 <= 2 s (left open by the seed) => observe
        (seen(p95=800), Verdict.OBSERVE, {Reason.P95_ELEVATED}),
        (seen(p95=2000), Verdict.OBSERVE, {Reason.P95_ELEVATED}),
        (
            seen(rate=0.03, p95=1500),
            Verdict.OBSERVE,
            {Reason.ERROR_RATE_ELEVATED, Reason.P95_ELEVATED},
        ),
        # error rate < 1% and P95 < 800 ms => proceed (1% itself is not "above 1%")
        (seen(rate=0.0), Verdict.PROCEED, {Reason.HEALTHY}),
        (seen(rate=0.01, p95=799), Verdict.PROCEED, {Reason.HEALTHY}),
        # too few requests or no data => inconclusive, never a pass (and never a rollback on noise)
        (seen(requests=49), Verdict.INCONCLUSIVE, {Reason.TOO_FEW_REQUESTS}),
        (seen(rate=0.5, p95=5000, requests=10), Verdict.INCONCLUSIVE, {Reason.TOO_FEW_REQUESTS}),
        (seen(requests=0, p95=None), Verdict.INCONCLUSIVE, {Reason.TOO_FEW_REQUESTS}),
        (seen(rate=None, p95=None, requests=None), Verdict.INCONCLUSIVE, {Reason.NO_DATA}),
        (seen(p95=None), Verdict.INCONCLUSIVE, {Reason.NO_DATA}),
        (seen(healthz=None), Verdict.PROCEED, {Reason.HEALTHY}),  # not probed is not a failure
    ],
)
def test_decision_table(observation: Observation, verdict: Verdict, reasons: set[Reason]) -> None:
    judgement = judge(T, observation)
    assert judgement.verdict is verdict
    assert set(judgement.reasons) == reasons


def test_thresholds_come_from_configuration() -> None:
    strict = Thresholds(
        error_rate_rollback=0.02,
        error_rate_observe=0.001,
        p95_rollback_ms=500,
        p95_proceed_ms=200,
        min_requests=5,
    )
    assert judge(strict, seen(rate=0.03)).verdict is Verdict.ROLLBACK
    assert judge(strict, seen(p95=300)).verdict is Verdict.OBSERVE
    assert judge(strict, seen(requests=6)).verdict is Verdict.PROCEED


START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("minutes_later", "observation", "verdict"),
    [
        (1, seen(rate=0.03), Verdict.OBSERVE),  # still inside the 5-minute window
        (4.99, seen(rate=0.03), Verdict.OBSERVE),
        (5, seen(rate=0.03), Verdict.ROLLBACK),  # window over, still above 1%
        (5, seen(rate=0.0), Verdict.PROCEED),  # recovered
        (2, seen(rate=0.0), Verdict.PROCEED),  # recovered early
        (2, seen(rate=0.2), Verdict.ROLLBACK),  # got worse: no need to wait
        (3, seen(requests=3), Verdict.OBSERVE),  # inconclusive inside the window: keep watching
        (5, seen(requests=3), Verdict.ROLLBACK),  # inconclusive at the end is not a recovery
    ],
)
def test_observation_window_with_an_injected_clock(
    minutes_later: float, observation: Observation, verdict: Verdict
) -> None:
    now = START + timedelta(minutes=minutes_later)
    assert after_observation(T, judge(T, observation), START, now) is verdict


@pytest.mark.parametrize(
    ("observing", "minutes_later", "observation", "verdict"),
    [
        (False, 0, seen(rate=0.02), Verdict.OBSERVE),  # observation begins
        (False, 0, seen(rate=0.0), Verdict.PROCEED),  # not observing: the table alone
        (False, 0, seen(requests=3), Verdict.INCONCLUSIVE),
        (True, 2, seen(requests=3), Verdict.OBSERVE),  # too little data keeps observing
        (True, 6, seen(requests=3), Verdict.ROLLBACK),  # ...until the window is over
        (True, 6, seen(rate=0.02), Verdict.ROLLBACK),  # still above after 5 minutes
        (True, 2, seen(rate=0.0), Verdict.PROCEED),  # recovered
    ],
)
def test_the_verdict_across_judgements_keeps_observing_until_the_window_ends(
    observing: bool, minutes_later: float, observation: Observation, verdict: Verdict
) -> None:
    now = START + timedelta(minutes=minutes_later)
    since = START if observing else None
    assert observed_verdict(T, judge(T, observation), since, now) is verdict
