"""A revision's numbers over a window that ends at the newest data Monitoring shows."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.ops.context import Deps
from bot.policy.windows import judgement_window
from bot.ports import ServiceRef

# Look this far back for the newest visible point (Cloud Run's arrive up to ~3 minutes late).
SEARCH_BACK = timedelta(minutes=15)

Numbers = tuple[int | None, int | None, float | None]  # requests, errors, P95 ms
Window = tuple[datetime, datetime]


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
