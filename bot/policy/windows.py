"""Which minutes a judgement decides on: the freshest window that can decide. Pure.

Cloud Run writes one point a minute per revision and Monitoring shows it up to ~3 minutes late.
A judgement decides on the newest complete minutes Monitoring shows that hold the minimum
sample count (Flagger's default metric interval is one minute too), extending back one minute
at a time only as far as needed, never past the runbook's window and never to minutes before
those that may count (a canary step's warm-up, an observation's start). An average over five
minutes would mix a spike with the healthy minutes before it; the newest minute alone may hold
too few requests to mean anything.

Time is data time here: the end of the newest visible minute, never the clock. A judgement
needs a minute it has not judged yet ("no empty judgements"), and an observation ends when
Monitoring shows the minutes up to its end, however many reads found nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.ports import Minute

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class FreshWindow:
    """The minutes a judgement decides on, and what they hold."""

    start: datetime
    end: datetime
    requests: int
    errors: int

    @property
    def minutes(self) -> int:
        return round((self.end - self.start) / MINUTE)


def newest_minute(minutes: Iterable[Minute]) -> datetime | None:
    """The end of the newest minute Monitoring shows; None when it shows none."""
    return max((minute.end for minute in minutes), default=None)


def counts_from(minute_end: datetime, not_before: datetime | None) -> bool:
    """Whether the minute ending at ``minute_end`` may count: it ends after ``not_before`` (a
    step's warm-up may end mid-minute: the minute it ends in is the step's traffic too; an
    observation begins at a minute's end, so its minutes are those after it)."""
    return not_before is None or minute_end > not_before


def freshest_window(
    minutes: Iterable[Minute],
    *,
    min_requests: int,
    longest: timedelta,
    not_before: datetime | None = None,
) -> FreshWindow | None:
    """The newest minutes that hold ``min_requests``, from the newest visible one back, one
    minute at a time, never longer than ``longest`` (the runbook's window) nor to a minute that
    may not count. A minute Monitoring has no point for had no requests. Never enough requests:
    the longest window allowed (too few to judge, which the decision table says). None when no
    visible minute may count yet."""
    by_end = {minute.end: minute for minute in minutes}
    end = max(by_end, default=None)
    if end is None or not counts_from(end, not_before):
        return None
    most = max(1, int(longest / MINUTE))
    requests = errors = taken = 0
    while taken < most and counts_from(end - taken * MINUTE, not_before):
        minute = by_end.get(end - taken * MINUTE)
        requests += minute.requests if minute else 0
        errors += minute.errors if minute else 0
        taken += 1
        if requests >= min_requests:
            break
    return FreshWindow(end - taken * MINUTE, end, requests, errors)


def is_new(newest: datetime | None, judged_until: datetime | None) -> bool:
    """Whether Monitoring shows a minute the last judgement did not have."""
    return newest is not None and (judged_until is None or newest > judged_until)


def observation_over(
    observing_since: datetime, newest: datetime | None, observe_minutes: float
) -> bool:
    """An observation of ``observe_minutes`` that began at data time ``observing_since`` is
    over once Monitoring shows the minutes up to its end (data time, not the clock)."""
    return newest is not None and newest - observing_since >= timedelta(minutes=observe_minutes)
