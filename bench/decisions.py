"""The runbook's decision table and its timeouts, measured: how soon Runback rolls back.

``python -m bench.decisions`` (also run by ``python -m bench.run``). Each row is an incident in
an in-process Sandbox (the real bot, the emulators, Monitoring's points ~3 minutes late as Cloud
Run's are), driven in sandbox time, which passes like time (every check runs at its own due
time). A row's condition starts at a whole minute and 5 seconds; the alert comes when Cloud
Monitoring would send it:

- a metric policy (error rate, P95; its condition held for one minute) alerts once Monitoring
  shows one minute of the condition: 3 minutes of ingestion delay + 1 minute, at +4 min;
- an uptime check (every minute, failing for one minute) alerts at +2 min;
- the stale alert measured the spike at +4 min, but reaches Runback at +12 min, long after the
  revision recovered (a retried delivery, say).

Printed beside the runbook's table ("Incidentes: Cuándo Rollback"): when Runback decided to roll
back, in sandbox time, from the condition's start and from the alert (the traffic PATCH follows
in milliseconds: ``python -m bench.run`` measures that), and what decided. Targets: each "roll
back now" row within its timeout of the alert; the observe row rolled back within 8 minutes of
the alert when the errors stay, never when they recover; the stale alert moves nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/decisions.py` puts bench/, not the root, first
    sys.path.insert(0, str(ROOT))

SERVICE = "wa-backend"
SERVING = f"{SERVICE}-00003"
MINUTE_S = 60.0
WATCHED_S = 20 * MINUTE_S  # how long after the condition's start a row is followed


@dataclass(frozen=True)
class Case:
    """One row: what goes wrong (``set`` lines at minutes after the start), when the alert
    comes, and what the runbook says."""

    name: str
    runbook: str  # the runbook's action and timeout
    changes: tuple[tuple[float, str], ...]  # (minute, behaviour) from the condition's start
    alert_at_min: float
    alert_kind: str = "error_rate"
    measured_at_min: float | None = None  # a stale alert: measured then, delivered at alert_at
    rollback_within_s: float | None = None  # from the alert; None: must never roll back


CASES = (
    Case(
        "/healthz failing",
        "roll back now, < 1 min",
        ((0, "healthz=503"),),
        alert_at_min=2,
        alert_kind="uptime",
        rollback_within_s=60,
    ),
    Case(
        "error rate 8%",
        "roll back now, < 2 min",
        ((0, "error_rate=0.08"),),
        alert_at_min=4,
        rollback_within_s=120,
    ),
    Case(
        "P95 2.5 s",
        "roll back now, < 3 min",
        ((0, "p95_ms=2500"),),
        alert_at_min=4,
        alert_kind="latency",
        rollback_within_s=180,
    ),
    Case(
        "error rate 3%, stays",
        "observe 5 min, then roll back, < 8 min",
        ((0, "error_rate=0.03"),),
        alert_at_min=4,
        rollback_within_s=480,
    ),
    Case(
        "error rate 3%, recovers",
        "observe 5 min; recovered: no rollback",
        ((0, "error_rate=0.03"), (4, "error_rate=0.002")),
        alert_at_min=4,
    ),
    Case(
        "stale alert (8% gone)",
        "healthy now: no rollback",
        ((0, "error_rate=0.08"), (2, "error_rate=0.002")),
        alert_at_min=12,
        measured_at_min=4,
    ),
)


@dataclass
class Outcome:
    case: Case
    rolled_back_after_s: float | None  # from the condition's start; None: never
    verdicts: list[str] = field(default_factory=list)
    decided_by: str = ""

    @property
    def from_alert_s(self) -> float | None:
        if self.rolled_back_after_s is None:
            return None
        return self.rolled_back_after_s - self.case.alert_at_min * MINUTE_S

    @property
    def ok(self) -> bool:
        within = self.case.rollback_within_s
        if within is None:
            return self.rolled_back_after_s is None
        return self.from_alert_s is not None and 0 <= self.from_alert_s < within


@contextmanager
def sandbox() -> Iterator[Any]:
    """The shipped app.yaml in a Sandbox whose clock only `wait` moves on (no background
    ticker), its health checks not sleeping, Monitoring 3 minutes late."""
    from bot.config import load_config
    from bot.sandbox.console import Sandbox

    config = load_config(ROOT / "app.yaml")
    rollback = config.rollback.model_copy(update={"health_check_interval_s": 0})
    box = Sandbox(config.model_copy(update={"rollback": rollback}), scheduler=False)
    try:
        assert box.emulator.monitoring.delay_s == 180, "Monitoring's delay must be on"
        yield box
    finally:
        box.close()


def run_case(case: Case) -> Outcome:
    """One row in a fresh sandbox: the condition from a whole minute + 5 s, the alert, then
    ``WATCHED_S`` of sandbox time."""
    from bot.sandbox.seed import alert_payload

    with sandbox() as box:
        box.clock.advance(65 - box.clock.time() % 60)
        start = box.clock.time()
        stale: str | None = None
        moments = sorted(
            [(at, "set", change) for at, change in case.changes]
            + [(case.alert_at_min, "alert", "")]
            + ([(case.measured_at_min, "measure", "")] if case.measured_at_min else [])
        )
        for minute, what, change in moments:
            _wait_until(box, start + minute * MINUTE_S)
            if what == "set":
                box.run_line(f"set {SERVING} {change}")
            elif what == "measure":
                stale = alert_payload(box.emulator, SERVICE, "open", "0.bench-stale")
            elif stale is not None:
                _post(box, stale)
            else:
                box.run_line(f"alert {SERVICE} {case.alert_kind}")
        _wait_until(box, start + WATCHED_S)
        return _outcome(box, case, start)


def _wait_until(box: Any, moment: float) -> None:
    seconds = moment - box.clock.time()
    if seconds > 0:
        box.run_line(f"wait {seconds:.3f}s")


def _post(box: Any, body: str) -> None:
    response = box.post_alert(body)
    if response.status_code != 200:
        raise RuntimeError(f"the stale alert answered HTTP {response.status_code}")
    box.runtime.engine.wait_idle(timeout_s=60)


def _outcome(box: Any, case: Case, start: float) -> Outcome:
    from sqlalchemy import select

    from bot.store import Operation

    store = box.runtime.deps.store
    with store.session() as session:
        query = select(Operation).where(Operation.kind == "rollback")
        rollbacks = list(session.scalars(query.order_by(Operation.created_at)))
    (record,) = [r for r in _incidents(box)] or [None]
    judgements = (record.data.get("judgements") if record else None) or []
    after = rollbacks[0].created_at.timestamp() - start if rollbacks else None
    deciding = next(
        (j for j in judgements if j["verdict"] in ("rollback", "observe_expired")),
        judgements[-1] if judgements else {},
    )
    return Outcome(
        case,
        after,
        [j["verdict"] for j in judgements],
        deciding.get("decided_by", ""),
    )


def _incidents(box: Any) -> list[Any]:
    from sqlalchemy import select

    from bot.store import IncidentRecord

    with box.runtime.deps.store.session() as session:
        return list(session.scalars(select(IncidentRecord)))


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    sign = "-" if seconds < 0 else "+"
    whole = round(abs(seconds))
    return f"{sign}{whole // 60}m{whole % 60:02d}s"


def table(outcomes: list[Outcome]) -> list[str]:
    header = (
        "condition",
        "runbook",
        "alert at",
        "rolled back (from start)",
        "(from alert)",
        "decided by",
        "target",
        "",
    )
    rows = [header]
    for outcome in outcomes:
        case = outcome.case
        within = case.rollback_within_s
        target = f"< {within / 60:g} min of the alert" if within else "no rollback"
        rows.append(
            (
                case.name,
                case.runbook,
                _minutes(case.alert_at_min * MINUTE_S),
                _minutes(outcome.rolled_back_after_s),
                _minutes(outcome.from_alert_s),
                outcome.decided_by or "-",
                target,
                "PASS" if outcome.ok else "MISS",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return ["| " + line.rstrip() for line in lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.decisions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON too")
    args = parser.parse_args(argv)
    outcomes = [run_case(case) for case in CASES]
    print(
        "\nthe runbook's decision table, measured in sandbox time (Monitoring 3 min late; "
        f"at {datetime.now():%Y-%m-%d}):"
    )
    for line in table(outcomes):
        print("  " + line)
    misses = sum(1 for outcome in outcomes if not outcome.ok)
    print(f"  {len(outcomes)} rows, {misses} miss(es)")
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "condition": o.case.name,
                        "rolled_back_after_s": o.rolled_back_after_s,
                        "from_alert_s": o.from_alert_s,
                        "verdicts": o.verdicts,
                        "decided_by": o.decided_by,
                        "ok": o.ok,
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    return 0 if misses == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
