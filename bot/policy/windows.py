"""Which minutes a judgement looks at. Pure.

Cloud Run's metrics become visible up to ~3 minutes late. A window that ends "now" would judge
a revision on the few minutes Monitoring already has and count the rest as if they had no
traffic; so a window ends at the newest visible data and looks back from there.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def judgement_window(
    now: datetime,
    visible_until: datetime | None,
    lookback: timedelta | None = None,
    not_before: datetime | None = None,
) -> tuple[datetime, datetime] | None:
    """``(start, end)`` ending at the newest visible data (never after ``now``), looking back
    ``lookback`` and never starting before ``not_before``; None when no visible data is left."""
    if visible_until is None:
        return None
    end = min(now, visible_until)
    starts = [moment for moment in (not_before, end - lookback if lookback else None) if moment]
    if not starts:
        raise ValueError("a window needs a lookback or a start")
    start = max(starts)
    return (start, end) if end > start else None
