"""Scenario: what the sandbox page's event stream costs. A sandbox runs examples/release.txt and
examples/incident.txt (a release carried to 100% with its judgements, chart and cards; an alert,
its automatic rollback and the postmortem), then the page's workspace snapshot (workspace.py, what
each stream sends whenever something changes, built at most every 125 ms) is built and encoded
again and again: its time bounds how much CPU a watched page takes.

    python -m bench.sandbox_page [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bot.config import load_config
from bot.sandbox.console import Sandbox
from bot.sandbox.web.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("examples/release.txt", "examples/incident.txt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_page", description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    box = Sandbox(load_config(REPO / "app.yaml"))
    try:
        workspace = Workspace(box)
        for script in SCRIPTS:
            for line in (REPO / script).read_text(encoding="utf-8").splitlines():
                if not line.startswith("expect"):  # the second script runs on the first's world
                    box.run_line(line)
        timings, size = [], 0
        for _ in range(args.runs):
            started = time.perf_counter()
            size = len(json.dumps(workspace.snapshot(), ensure_ascii=False).encode())
            timings.append(time.perf_counter() - started)
        timings.sort()
        messages = len(box.emulator.slack.messages())
        versions = sum(m["version"] for m in box.emulator.slack.messages())
        print(f"after {' + '.join(SCRIPTS)}: {messages} messages, {versions} versions in all")
        print(
            f"snapshot build + JSON: median {statistics.median(timings) * 1000:.1f} ms, "
            f"p95 {timings[int(len(timings) * 0.95) - 1] * 1000:.1f} ms, "
            f"{size / 1024:.0f} KiB ({args.runs} runs)"
        )
    finally:
        box.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
