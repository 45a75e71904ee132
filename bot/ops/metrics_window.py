"""A revision's numbers over a window that ends at the newest data Monitoring shows."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.ops.context import Deps
from bot.policy.windows import judgement_window
from bot.ports import ServiceRef

# Look this far back for the newest visible point (Cloud Run's arrive up to ~3 minutes late).
SEARCH_BACK = timedelta(minutes=15)

Numbers = tuple[int | None, int | None, float | None]  # requests, errors, P95 ms
Window = tuple[datetime, datetime]

log = logging.getLogger("runback.metrics")


def visible_numbers(
    deps: Deps,
    ref: ServiceRef,
    revision: str,
    lookback: timedelta | None = None,
    not_before: datetime | None = None,
) -> Numbers:
    """``visible_window_numbers`` without the window."""
    return visible_window_numbers(deps, ref, revision, lookback, not_before)[0]


def visible_window_numbers(
    deps: Deps,
    ref: ServiceRef,
    revision: str,
    lookback: timedelta | None = None,
    not_before: datetime | None = None,
) -> tuple[Numbers, Window | None]:
    """Requests, errors and P95 over the window that ends at the newest visible point, and that
    window. No visible point yet is zero requests (too few to judge), not "no data". Raises
    MetricsError."""
    now = deps.clock.now()
    search_from = now - SEARCH_BACK if not_before is None else max(not_before, now - SEARCH_BACK)
    visible = deps.metrics.visible_until(ref, revision, search_from, now)
    window = judgement_window(now, visible, lookback=lookback, not_before=not_before)
    if window is None:
        return (0, 0, None), None
    metrics = deps.metrics.revision_metrics(ref, revision, *window)
    return (metrics.requests, metrics.errors, metrics.p95_ms), (metrics.start, metrics.end)


def observing_since(data: dict[str, Any]) -> datetime | None:
    """When the decision table's "observe" began for an operation (its ``observing_since``)."""
    since = data.get("observing_since")
    return datetime.fromisoformat(since) if since else None


def judged_numbers(
    deps: Deps, ref: ServiceRef, revision: str, start: datetime, observing: datetime | None
) -> tuple[Numbers, Window | None]:
    """The numbers a judgement of ``revision`` uses: over the runbook's window, no earlier than
    ``start``, nor than when observing began ("still above?" is asked of the minutes since).
    Monitoring faults read as no data, which is never a pass."""
    if observing:
        start = max(start, observing)
    lookback = timedelta(minutes=deps.config.thresholds.window_minutes)
    try:
        return visible_window_numbers(deps, ref, revision, lookback=lookback, not_before=start)
    except Exception as error:
        log.warning("Monitoring unreadable for %s: %s", revision, error)
        return (None, None, None), None
