"""Scenario 1: cold start, process start to first ack, against a minimal Bolt app."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import BOT_ARGV, MINIMAL_ARGV, ROOT, Process, World, progress

ANSWER_WAIT_S = 10.0

IMPORTS = {
    "slack_bolt + slack_sdk + waitress": "import slack_bolt, slack_bolt.adapter.wsgi, waitress",
    "bot.config (pydantic models)": "import bot.config",
    "sqlalchemy (bot.store)": "import sqlalchemy, sqlalchemy.orm",
    "jinja2 + yaml (bot.render)": "import bot.render",
    "what serve imports before it listens": "import bot.__main__, bot.serving",
    "everything serve loads (after listening)": (
        "import bot.__main__, bot.runtime, bot.slack.app, bot.slack.chat, bot.web, waitress"
    ),
}


def import_seconds(statement: str) -> float:
    code = "import time; t = time.perf_counter(); " + statement + "; print(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return float(done.stdout.strip())


def answered_s(world: World, process: Process, acked_s: float) -> float:
    """Launch -> the first ``/ops help`` answer reached the user: at the command's
    response_url when ``serve`` acked before the bot was loaded, else in the ack itself."""
    launched = time.time() - (time.perf_counter() - process.started)
    deadline = time.monotonic() + ANSWER_WAIT_S
    while time.monotonic() < deadline:
        for call in world.calls("slack.response_url", since=launched):
            if isinstance(call.body, dict) and call.body.get("text"):
                return call.at - launched
        time.sleep(0.005)
    return acked_s


def bench_cold_start(world: World, runs: int) -> dict[str, Any]:
    """Launch -> first 200 ack, for the bot and the minimal Bolt app, alternating."""
    interpreter: list[float] = []
    samples: dict[str, list[float]] = {"bot": [], "minimal": []}
    listening: dict[str, list[float]] = {"bot": [], "minimal": []}
    answered: list[float] = []
    for attempt in range(runs + 1):  # the first round warms .pyc files and the page cache
        for name, argv in (("bot", BOT_ARGV), ("minimal", MINIMAL_ARGV)):
            with world.running(argv) as (process, seconds):
                if attempt:
                    samples[name].append(seconds)
                    listening[name].append(process.listening_s or float("nan"))
                    if name == "bot":
                        answered.append(answered_s(world, process, seconds))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        if attempt:
            interpreter.append(time.perf_counter() - started)
        progress(f"cold start round {attempt}/{runs}")
    imports = {
        label: statistics.median(import_seconds(code) for _ in range(3))
        for label, code in IMPORTS.items()
    }
    bot, minimal = statistics.median(samples["bot"]), statistics.median(samples["minimal"])
    return {
        "bot_s": bot,
        "minimal_s": minimal,
        "ratio": bot / minimal,
        "bot_answer_s": statistics.median(answered),
        "bot_listening_s": statistics.median(listening["bot"]),
        "minimal_listening_s": statistics.median(listening["minimal"]),
        "interpreter_s": statistics.median(interpreter),
        "imports_s": imports,
        "bot_samples_s": samples["bot"],
        "minimal_samples_s": samples["minimal"],
    }
