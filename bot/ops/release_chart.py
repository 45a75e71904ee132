"""The PNG chart posted to a release's Slack thread when a blue/green release ends.

Two stacked panels share the time axis: the green revision's error rate (%) and its P95
latency (ms), each with its thresholds as dashed lines, the canary traffic steps as vertical
lines annotated "10%", "50%"..., a red rollback marker, and the samples judged "rollback"
highlighted. ``None`` (or non-finite) values are drawn as gaps.

Every user-facing text comes from ``labels`` (the caller takes it from the locale catalogue);
a missing key draws nothing. Recognised keys: ``error_rate``, ``p95``, ``traffic``,
``rollback``, ``time``, ``no_data`` and, optionally, ``threshold_rollback``,
``threshold_observe``, ``threshold_proceed`` (legend entries for the threshold lines; without
them the lines are only tagged with their value) and ``rollback_verdict`` (legend entry of the
highlighted samples, falling back to ``rollback``).

matplotlib is imported lazily and only through its object API (``Figure`` + ``FigureCanvasAgg``,
never pyplot): no GUI backend, no global figure registry, so concurrent renders do not share
state. All texts are drawn with ``parse_math=False`` so a ``$`` in a service name or a
translation is printed as is instead of being parsed as mathtext.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

WIDTH_IN, HEIGHT_IN, DPI = 9, 5, 100  # 900 x 500 px
MAX_TITLE_CHARS = 200

# Colours (not user-facing text).
_ERROR = "#1f77b4"
_P95 = "#6a3d9a"
_ROLLBACK = "#d62728"
_OBSERVE = "#ff7f0e"
_PROCEED = "#2ca02c"
_STEP = "#7f7f7f"


def render_release_chart(
    points: Sequence[Mapping[str, Any]],
    steps: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, Any],
    title: str,
    labels: Mapping[str, str],
) -> bytes:
    """Render the release chart and return it as PNG bytes (900x500, same input -> same bytes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    label = _Labels(labels)
    samples = sorted(
        (_sample(p) for p in points if isinstance(p.get("at"), datetime)),
        key=lambda s: s["at"],
    )

    if samples:
        _draw_release(fig, samples, _steps(steps), thresholds, label)
    else:
        fig.text(
            0.5,
            0.5,
            label["no_data"],
            ha="center",
            va="center",
            fontsize=14,
            color=_STEP,
            parse_math=False,
        )
    _title(fig, _clean(title))

    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine behind, and savefig then draws the whole
    # figure once more before drawing it for the PNG: laid out already, one draw is enough
    fig.set_layout_engine(None)
    out = io.BytesIO()
    fig.savefig(
        out,
        format="png",
        dpi=DPI,
        facecolor="white",
        metadata={"Software": None},
    )
    return out.getvalue()


class _Labels:
    def __init__(self, labels: Mapping[str, str]) -> None:
        self._labels = labels or {}

    def __getitem__(self, key: str) -> str:
        value = self._labels.get(key)
        return "" if value is None else _clean(value)


def _draw_release(
    fig: Any,
    samples: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    thresholds: Mapping[str, Any],
    label: _Labels,
) -> None:
    from matplotlib import dates as mdates
    from matplotlib import ticker

    err_ax, p95_ax = fig.subplots(2, 1, sharex=True)
    times = [mdates.date2num(s["at"]) for s in samples]
    rollback = [s["verdict"] == "rollback" for s in samples]

    errors = [_num(s["error_rate"], scale=100.0) for s in samples]
    _series(err_ax, times, errors, rollback, _ERROR, label["error_rate"], label)
    _threshold(
        err_ax,
        thresholds.get("error_rate_rollback"),
        100.0,
        _ROLLBACK,
        label["threshold_rollback"],
        "{:g}%",
    )
    _threshold(
        err_ax,
        thresholds.get("error_rate_observe"),
        100.0,
        _OBSERVE,
        label["threshold_observe"],
        "{:g}%",
    )
    err_ax.yaxis.set_major_formatter(ticker.PercentFormatter(xmax=100))
    _ylim(
        err_ax,
        errors,
        [thresholds.get("error_rate_rollback"), thresholds.get("error_rate_observe")],
        100.0,
    )

    p95 = [_num(s["p95_ms"]) for s in samples]
    _series(p95_ax, times, p95, rollback, _P95, label["p95"], label)
    _threshold(
        p95_ax,
        thresholds.get("p95_rollback_ms"),
        1.0,
        _ROLLBACK,
        label["threshold_rollback"],
        "{:g}",
    )
    _threshold(
        p95_ax, thresholds.get("p95_proceed_ms"), 1.0, _PROCEED, label["threshold_proceed"], "{:g}"
    )
    _ylim(p95_ax, p95, [thresholds.get("p95_rollback_ms"), thresholds.get("p95_proceed_ms")], 1.0)

    for ax, values in ((err_ax, errors), (p95_ax, p95)):
        if all(math.isnan(v) for v in values):
            ax.text(
                0.5,
                0.5,
                label["no_data"],
                transform=ax.transAxes,
                ha="center",
                va="center",
                color=_STEP,
                fontsize=11,
                parse_math=False,
            )

    _steps_markers(err_ax, p95_ax, steps, label)

    start = min([samples[0]["at"], *(s["at"] for s in steps)])
    end = max([samples[-1]["at"], *(s["at"] for s in steps)])
    span = end - start
    pad = max(span * 0.02, timedelta(seconds=30))
    p95_ax.set_xlim(mdates.date2num(start - pad), mdates.date2num(end + pad))
    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=9)
    p95_ax.xaxis.set_major_locator(locator)
    p95_ax.xaxis.set_major_formatter(mdates.DateFormatter(_time_format(span + 2 * pad), tz=UTC))

    err_ax.set_ylabel(label["error_rate"], parse_math=False)
    p95_ax.set_ylabel(label["p95"], parse_math=False)
    p95_ax.set_xlabel(label["time"], parse_math=False)
    for ax in (err_ax, p95_ax):
        ax.grid(True, color="#e5e5e5", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=8)
        handles, names = ax.get_legend_handles_labels()
        if handles:
            legend = ax.legend(handles, names, loc="best", fontsize=7, framealpha=0.85)
            for text in legend.get_texts():
                text.set_parse_math(False)


def _series(
    ax: Any,
    times: list[float],
    values: list[float],
    rollback: list[bool],
    colour: str,
    name: str,
    label: _Labels,
) -> None:
    # NaN breaks the line; markers keep samples isolated between gaps visible.
    ax.plot(times, values, color=colour, linewidth=1.4, marker="o", markersize=2.5, label=name)
    hot = [
        (t, v) for t, v, r in zip(times, values, rollback, strict=True) if r and not math.isnan(v)
    ]
    if hot:
        ax.scatter(
            [t for t, _ in hot],
            [v for _, v in hot],
            s=36,
            color=_ROLLBACK,
            edgecolors="black",
            linewidths=0.5,
            zorder=5,
            label=label["rollback_verdict"] or label["rollback"],
        )


def _threshold(ax: Any, value: Any, scale: float, colour: str, name: str, fmt: str) -> None:
    number = _num(value, scale)
    if math.isnan(number):
        return
    ax.axhline(number, color=colour, linestyle="--", linewidth=1.0, label=name)
    ax.annotate(
        fmt.format(number),
        xy=(0.0, number),
        xycoords=("axes fraction", "data"),
        xytext=(3, 2),
        textcoords="offset points",
        ha="left",
        va="bottom",
        fontsize=7,
        color=colour,
        parse_math=False,
    )


def _ylim(ax: Any, values: list[float], thresholds: list[Any], scale: float) -> None:
    finite = [v for v in values if not math.isnan(v)]
    finite += [n for n in (_num(t, scale) for t in thresholds) if not math.isnan(n)]
    top = max(finite, default=1.0)
    bottom = min(0.0, *finite) if finite else 0.0
    if top <= bottom:
        top = bottom + 1.0
    ax.set_ylim(bottom, top + (top - bottom) * 0.18)


def _steps_markers(err_ax: Any, p95_ax: Any, steps: list[dict[str, Any]], label: _Labels) -> None:
    from matplotlib import dates as mdates

    traffic_named = rollback_named = False
    for index, step in enumerate(steps):
        x = mdates.date2num(step["at"])
        if step.get("event") == "rollback":
            colour, text, style = _ROLLBACK, label["rollback"], "-"
            name = "" if rollback_named else label["rollback"]
            rollback_named = True
            width = 1.6
        elif isinstance(step.get("percent"), int | float) and not isinstance(
            step.get("percent"), bool
        ):
            colour, text, style = _STEP, f"{step['percent']:g}%", ":"
            name = "" if traffic_named else label["traffic"]
            traffic_named = True
            width = 1.1
        else:
            continue
        err_ax.axvline(x, color=colour, linestyle=style, linewidth=width, label=name)
        p95_ax.axvline(x, color=colour, linestyle=style, linewidth=width)
        if text:
            # Staggered so that steps close in time do not print over each other.
            err_ax.annotate(
                text,
                xy=(x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -3 - 9 * (index % 2)),
                textcoords="offset points",
                ha="left",
                va="top",
                fontsize=7,
                color=colour,
                annotation_clip=False,
                parse_math=False,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )


def _title(fig: Any, title: str) -> None:
    """The title on one line: smaller font first, then cut with an ellipsis, until it fits."""
    if not title:
        return
    title = title[:MAX_TITLE_CHARS]
    text = fig.suptitle(title, fontsize=11, parse_math=False)
    renderer = fig.canvas.get_renderer()
    room = fig.bbox.width * 0.97

    def fits() -> bool:
        return text.get_window_extent(renderer).width <= room

    size = 11
    while not fits() and size > 8:
        size -= 1
        text.set_fontsize(size)
    if fits():
        return
    low, high = 0, len(title)  # longest prefix that fits, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        text.set_text(title[:mid].rstrip() + "…")
        if fits():
            low = mid
        else:
            high = mid - 1
    text.set_text(title[:low].rstrip() + "…")


def _sample(point: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": _utc(point["at"]),
        "error_rate": point.get("error_rate"),
        "p95_ms": point.get("p95_ms"),
        "verdict": point.get("verdict") or "",
    }


def _steps(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    valid = [dict(s, at=_utc(s["at"])) for s in steps or () if isinstance(s.get("at"), datetime)]
    return sorted(valid, key=lambda s: s["at"])


def _utc(at: datetime) -> datetime:
    # Naive datetimes are taken as UTC (the contract is aware UTC; be lenient).
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _num(value: Any, scale: float = 1.0) -> float:
    """A finite number scaled, or NaN (a gap) for None, NaN, inf or anything non-numeric."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    number = float(value) * scale
    return number if math.isfinite(number) else math.nan


def _time_format(span: timedelta) -> str:
    if span <= timedelta(minutes=10):
        return "%H:%M:%S"
    if span <= timedelta(days=1):
        return "%H:%M"
    return "%m-%d %H:%M"


def _clean(text: Any) -> str:
    """One line of printable text: control characters (NUL, newlines, tabs...) become spaces."""
    text = "".join(c if c.isprintable() else " " for c in str(text or ""))
    return " ".join(text.split())
