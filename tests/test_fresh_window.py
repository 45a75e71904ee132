"""The freshest window that can decide, and the alert as evidence: pure policy
(bot/policy/windows.py, bot/policy/evidence.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Thresholds
from bot.policy.evidence import AlertEvidence, DecidedBy, Measures, alert_evidence, weigh
from bot.policy.gates import Observation, Reason, Verdict, judge
from bot.policy.windows import (
    Minute,
    counts_from,
    freshest_window,
    is_new,
    newest_minute,
    observation_over,
)

T = Thresholds()
NOW = datetime(2026, 11, 30, 13, 7, 20, tzinfo=UTC)
NEWEST = datetime(2026, 11, 30, 13, 4, tzinfo=UTC)  # Monitoring is ~3 minutes behind
FIVE = timedelta(minutes=5)


def minutes(*counts: tuple[int, int]) -> list[Minute]:
    """Newest first: (requests, errors) of the minutes ending at NEWEST, NEWEST - 1 min, ..."""
    return [
        Minute(NEWEST - timedelta(minutes=k), requests, errors)
        for k, (requests, errors) in enumerate(counts)
    ]


def window_of(found: list[Minute], **kw: object):
    kw.setdefault("min_requests", 50)
    kw.setdefault("longest", FIVE)
    return freshest_window(found, **kw)  # type: ignore[arg-type]


# -- the freshest window ---------------------------------------------------------------------


def test_the_newest_minute_alone_decides_when_it_holds_enough_requests() -> None:
    # three bad minutes after two good ones: a 5-minute average would read 4.8%
    found = minutes((1200, 96), (1200, 96), (1200, 96), (1200, 0), (1200, 0))
    window = window_of(found)
    assert window is not None
    assert (window.start, window.end) == (NEWEST - timedelta(minutes=1), NEWEST)
    assert (window.minutes, window.requests, window.errors) == (1, 1200, 96)


def test_it_extends_back_only_as_far_as_needed() -> None:
    window = window_of(minutes((20, 1), (20, 2), (20, 3), (20, 4)))
    assert window is not None and window.minutes == 3
    assert (window.requests, window.errors) == (60, 6)


def test_a_minute_monitoring_has_no_point_for_had_no_requests() -> None:
    found = [Minute(NEWEST, 30, 0), Minute(NEWEST - timedelta(minutes=2), 30, 0)]
    window = window_of(found)
    assert window is not None and window.minutes == 3 and window.requests == 60


def test_never_past_the_runbooks_window_too_few_is_the_whole_window() -> None:
    window = window_of(minutes(*[(5, 0)] * 10))
    assert window is not None and window.minutes == 5 and window.requests == 25


def test_never_before_the_minutes_that_may_count() -> None:
    # a step warmed up at 13:01:20: the minutes ending 13:02 to 13:04 may count, 13:01's not
    warm = datetime(2026, 11, 30, 13, 1, 20, tzinfo=UTC)
    window = window_of(minutes(*[(10, 0)] * 6), not_before=warm)
    assert window is not None and window.start == datetime(2026, 11, 30, 13, 1, tzinfo=UTC)
    assert window.minutes == 3 and window.requests == 30
    # an observation begins at a minute's end: that minute is not one of its own
    assert counts_from(NEWEST, NEWEST - timedelta(seconds=1))
    assert not counts_from(NEWEST, NEWEST)


def test_no_window_while_no_minute_may_count_yet() -> None:
    assert window_of([]) is None
    assert window_of(minutes((1200, 0)), not_before=NEWEST) is None


def test_a_judgement_needs_a_minute_it_has_not_had() -> None:
    assert newest_minute(minutes((1, 0), (1, 0))) == NEWEST
    assert newest_minute([]) is None
    assert is_new(NEWEST, None)
    assert is_new(NEWEST, NEWEST - timedelta(minutes=1))
    assert not is_new(NEWEST, NEWEST)
    assert not is_new(None, None)


def test_an_observation_ends_by_data_time_not_by_the_clock() -> None:
    began = NEWEST - timedelta(minutes=4)
    assert not observation_over(began, NEWEST, 5)
    assert not observation_over(began, None, 5), "reads that found nothing end nothing"
    assert observation_over(began, NEWEST + timedelta(minutes=1), 5)


# -- the alert as evidence -------------------------------------------------------------------


def fresh(requests: int | None, errors: int | None, p95: float | None = 120.0, healthz=True):
    return judge(T, Observation(healthz, requests, errors, p95))


def alert(observed: float, at: datetime = NOW, measures: Measures = Measures.ERROR_RATE):
    threshold = 0.01 if measures is Measures.ERROR_RATE else 2000.0
    return AlertEvidence(measures, observed, threshold, at, 60.0)


def test_an_alert_newer_than_the_minutes_shown_decides_when_it_is_worse() -> None:
    healthy_but_older = fresh(1200, 0)
    judgement, by = weigh(T, healthy_but_older, NEWEST, alert(0.08), NEWEST)
    assert (judgement.verdict, judgement.reasons, by) == (
        Verdict.ROLLBACK,
        (Reason.ERROR_RATE_HIGH,),
        DecidedBy.ALERT,
    )
    assert judgement.observation.requests == 1200, "the minutes' numbers are kept for the card"


def test_a_stale_alert_on_healthy_fresh_numbers_moves_nothing() -> None:
    stale = alert(0.08, at=NEWEST - timedelta(minutes=10))
    judgement, by = weigh(T, fresh(1200, 0), NEWEST, stale, NEWEST)
    assert (judgement.verdict, by) == (Verdict.PROCEED, DecidedBy.MINUTES)


def test_too_few_fresh_requests_and_an_alert_far_above_is_roll_back_not_wait() -> None:
    too_few = fresh(12, 4)
    assert too_few.verdict is Verdict.INCONCLUSIVE
    judgement, by = weigh(T, too_few, NEWEST, alert(0.33, at=NEWEST - timedelta(minutes=1)), NEWEST)
    assert (judgement.verdict, by) == (Verdict.ROLLBACK, DecidedBy.ALERT)
    judgement, by = weigh(T, too_few, NEWEST, alert(0.03, at=NEWEST), NEWEST)
    assert (judgement.verdict, judgement.reasons, by) == (
        Verdict.OBSERVE,
        (Reason.ERROR_RATE_ELEVATED,),
        DecidedBy.ALERT,
    )


def test_too_few_fresh_requests_and_an_alert_older_than_the_window_is_inconclusive() -> None:
    old = alert(0.33, at=NEWEST - timedelta(minutes=6))
    judgement, by = weigh(T, fresh(12, 4), NEWEST, old, NEWEST)
    assert (judgement.verdict, by) == (Verdict.INCONCLUSIVE, DecidedBy.MINUTES)


def test_the_fresh_minutes_and_the_health_check_decide_first() -> None:
    judgement, by = weigh(T, fresh(1200, 96), NEWEST, alert(0.02), NEWEST)
    assert (judgement.verdict, by) == (Verdict.ROLLBACK, DecidedBy.MINUTES)
    judgement, by = weigh(T, fresh(1200, 0, healthz=False), NEWEST, None, NEWEST)
    assert (judgement.verdict, by) == (Verdict.ROLLBACK, DecidedBy.HEALTH)
    judgement, by = weigh(T, fresh(1200, 36), NEWEST, alert(0.02), NEWEST)
    assert (judgement.verdict, by) == (Verdict.OBSERVE, DecidedBy.MINUTES), "not more severe"


def test_a_latency_alert_is_read_against_the_p95_rows() -> None:
    slow = alert(2500, measures=Measures.LATENCY)
    judgement, by = weigh(T, fresh(1200, 0), NEWEST, slow, NEWEST)
    assert (judgement.verdict, judgement.reasons, by) == (
        Verdict.ROLLBACK,
        (Reason.P95_HIGH,),
        DecidedBy.ALERT,
    )


@pytest.mark.parametrize(
    ("measures", "observed", "threshold", "expected"),
    [
        ("error_rate", "0.08", "0.01", 0.08),
        ("latency", "2500", "2000", 2500.0),
        ("error_rate", "12.5", "5", None),  # an error count per second says nothing of a rate
        ("error_rate", "", "0.01", None),
        ("error_rate", "nan", "0.01", None),
        ("other", "1", "0.5", None),
    ],
)
def test_what_an_alert_measured_is_evidence_only_when_it_is_a_decision_table_number(
    measures: str, observed: str, threshold: str, expected: float | None
) -> None:
    evidence = alert_evidence(measures, observed, threshold, NOW, 60.0)
    assert (evidence.observed if evidence else None) == expected
    assert alert_evidence("error_rate", "0.08", "0.01", None, 60.0) is None
