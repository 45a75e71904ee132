"""A rollback drill's time to safe traffic, in the sandbox.

``python -m bench.drill`` (also run by ``python -m bench.run``). Runs ``--drills`` drills one
after another with ``/ops drill`` in an in-process Sandbox (the real bot, Bolt over HTTP, the
run_v2 client against the Cloud Run emulator) at the shipped app.yaml's health-check settings,
and reports from each drill's record:
- time to safe traffic: from the start of the drill's rollback (the production rollback
  workflow) until 100% of traffic is back on the previous revision with its health verified;
- the whole drill: test revision deployed and verified, rollback, /metrics verified, recorded.
The runbook's target is a rollback in under five minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RUNBOOK_TARGET_S = 300.0  # "Rollback tiempo: < 5 minutos"


def measure(drills: int) -> dict[str, Any]:
    from bot.config import load_config
    from bot.sandbox.console import Sandbox

    box = Sandbox(load_config(ROOT / "app.yaml"))
    try:
        box.run_line("as pablo")
        store = box.runtime.deps.store
        safe, total = [], []
        for number in range(drills):
            box.run_line("/ops drill")
            deadline = time.monotonic() + 120
            while (
                not (done := store.drills.drills(outcomes=("passed", "failed"), limit=drills))
                or len(done) <= number
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("a drill did not end within 120 s")
                time.sleep(0.02)
            record = done[0]
            if record.outcome != "passed" or record.time_to_safe_s is None:
                raise RuntimeError(f"drill {record.id} {record.outcome}: {record.detail}")
            safe.append(record.time_to_safe_s)
            total.append((record.finished_at - record.started_at).total_seconds())
        health = box.config.rollback
        return {
            "drills": drills,
            "time_to_safe_s": safe,
            "drill_s": total,
            "health_checks": health.health_checks,
            "health_check_interval_s": health.health_check_interval_s,
        }
    finally:
        box.close()


def _wait_for_drill(store: Any, ended: int) -> Any:
    """The newest drill record, once ``ended`` drills have ended."""
    deadline = time.monotonic() + 120
    while True:
        done = store.drills.drills(outcomes=("passed", "failed"), limit=ended)
        if len(done) >= ended:
            return done[0]
        if time.monotonic() > deadline:
            raise RuntimeError("a drill did not end within 120 s")
        time.sleep(0.02)


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    return (
        f"median {statistics.median(ordered):.2f} s, max {ordered[-1]:.2f} s "
        f"(min {ordered[0]:.2f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drill", description=__doc__)
    parser.add_argument("--drills", type=int, default=5)
    args = parser.parse_args(argv)
    results = measure(args.drills)
    safe = results["time_to_safe_s"]
    verdict = "PASS" if max(safe) < RUNBOOK_TARGET_S else "MISS"
    print(
        f"\nrollback drill in the sandbox ({args.drills} drills; health verified by "
        f"{results['health_checks']} checks {results['health_check_interval_s']:g} s apart):"
    )
    print(f"  time to safe traffic   {summary(safe)}   target < 300 s: {verdict}")
    print(f"  whole drill            {summary(results['drill_s'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
