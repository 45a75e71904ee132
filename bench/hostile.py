"""The transport, forgery and fault groups of the safety attack (issues #21 and #22), re-run.

    python -m bench.hostile [--backend sqlite|postgresql|both]

Every request goes to the real bot over HTTP (Bolt on waitress, the emulators behind it), on
SQLite and, with DATABASE_URL_POSTGRES set, on PostgreSQL. A case is counted by what it left
behind, not by what the bot answered: *acted* when it recorded an operation or a release
candidate, sent Cloud Run a PATCH or posted a message to a channel; *refused* when it did none
of that; *5xx* when the bot answered a server error (never expected). Each case says which it
must be. The replay after `kill -9` runs `python -m bot serve` itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from bench.hostile_faults import faults, replay_after_restart  # noqa: E402
from bench.hostile_requests import Result, forged, limits, sandbox, transport  # noqa: E402

# -- the report -----------------------------------------------------------------------------------


def run(backends: list[str]) -> list[Result]:
    results: list[Result] = []
    for backend in backends:
        print(f"  · {backend}: transport and malformed requests", file=sys.stderr, flush=True)
        with sandbox(backend) as box:
            transport(results, box, backend)
        print(f"  · {backend}: forged clicks and forms", file=sys.stderr, flush=True)
        forged(results, backend)
        print(f"  · {backend}: migration SQL limits", file=sys.stderr, flush=True)
        limits(results, backend)
        print(f"  · {backend}: on-call during a backup, the database held", file=sys.stderr)
        faults(results, backend)
        print(f"  · {backend}: a replay after kill -9", file=sys.stderr, flush=True)
        replay_after_restart(results, backend)
    return results


def report(results: list[Result]) -> int:
    width = max(len(r.case) for r in results)
    for r in results:
        mark = "ok " if r.ok else "BAD"
        print(
            f"{mark} {r.backend:10} {r.group:10} {r.case:{width}}  expect {r.expect:7} "
            f"saw {r.seen:7} HTTP {r.status}"
        )
    print()
    counts: Counter[tuple[str, str, str]] = Counter((r.backend, r.group, r.seen) for r in results)
    for backend in sorted({r.backend for r in results}):
        for group in ("transport", "malformed", "replayed", "forged", "limits", "fault"):
            mine = [r for r in results if r.backend == backend and r.group == group]
            if mine:
                print(
                    f"{backend:10} {group:10} {len(mine):3} cases: "
                    f"refused {counts[(backend, group, 'refused')]}, "
                    f"acted {counts[(backend, group, 'acted')]}, "
                    f"5xx {counts[(backend, group, '5xx')]}, "
                    f"as expected {sum(r.ok for r in mine)}/{len(mine)}"
                )
    return 0 if all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hostile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in backends and not os.environ.get("DATABASE_URL_POSTGRES"):
        print("  · DATABASE_URL_POSTGRES is not set: SQLite only", file=sys.stderr)
        backends = [b for b in backends if b != "postgresql"]
    return report(run(backends))


if __name__ == "__main__":
    sys.exit(main())
