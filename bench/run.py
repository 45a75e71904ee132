"""Runback performance bench: cold start, ack latency, rollback overhead, the incident alert's
way to a rollback, memory, one release judgement, and a whole release at sandbox speed.

    python -m bench.run            (from the repository root; or: python bench/run.py)

Everything runs locally: the emulators live in this process, each bot is a real
``python -m bot serve`` subprocess talking to them over sockets, and every Slack request is
signed like Slack signs it. The two release phases run the bot in this process instead, in
the console's Sandbox (its own emulators, a clock that `wait` or ``speed`` moves on).
Prints a table of figures with PASS/MISS against the targets and writes them, with the raw
samples, to bench/results.json.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import math
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

from bot.config import Config, load_config  # noqa: E402
from bot.sandbox.emulator.http import RecordedCall  # noqa: E402
from bot.sandbox.emulator.server import Emulator  # noqa: E402
from bot.sandbox.seed import SAMPLE_REVISIONS, alert_payload, seed  # noqa: E402
from bot.sandbox.slack_payloads import find_button  # noqa: E402

BOT_TOKEN = "xoxb-sandbox"
TEAM_ID = "T0BENCH"
SERVICE = "wa-backend"
ON_CALL = "U0ANA"  # on call through the @oncall user group (app.yaml)
NEWEST = f"{SERVICE}-{SAMPLE_REVISIONS[-1][0]}"  # the revision reseed_service() leaves serving
RESULTS = ROOT / "bench" / "results.json"
START_TIMEOUT_S = 60.0

BOT_ARGV = [sys.executable, "-m", "bot", "serve"]
MINIMAL_ARGV = [sys.executable, "-m", "bench.minimal_bolt"]


class BenchError(Exception):
    """Something the bench needed did not happen (a bot died, a rollback failed...)."""


# -- small helpers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 400 samples is the 396th smallest)."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[max(1, math.ceil(len(ordered) * pct / 100)) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field_name} for pid {pid}")


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.005
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(poll_s)


def progress(text: str) -> None:
    print(f"  · {text}", file=sys.stderr, flush=True)


# -- signed Slack requests ----------------------------------------------------------------------


@dataclass
class SlackSender:
    """Sends slash commands to a bot the way Slack does (form body, v0 HMAC signature)."""

    emulator: Emulator
    signing_secret: str
    url: str = ""

    def command(
        self,
        command: str,
        text: str,
        user: str = ON_CALL,
        channel: str = "C0INCIDENTS",
        session: requests.Session | None = None,
        timeout_s: float = 10.0,
    ) -> requests.Response:
        form = {
            "token": "bench",
            "team_id": TEAM_ID,
            "team_domain": "runback-bench",
            "channel_id": channel,
            "channel_name": "incidents",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0RUNBACK",
            "trigger_id": secrets.token_hex(8),
            "response_url": self.emulator.slack.new_response_url(channel, user),
        }
        body = urlencode(form).encode()
        timestamp = str(int(time.time()))
        base = f"v0:{timestamp}:".encode() + body
        signature = "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        }
        poster = session or requests
        return poster.post(self.url, data=body, headers=headers, timeout=timeout_s)


# -- bot processes --------------------------------------------------------------------------


@dataclass
class Process:
    """A bot (or the minimal app) running as a subprocess on a free port."""

    argv: list[str]
    env: dict[str, str]
    port: int
    popen: subprocess.Popen[bytes]
    started: float  # time.perf_counter() just before Popen
    listening_s: float | None = None  # when it printed "listening", since started
    lines: list[str] = field(default_factory=list)  # its stdout and stderr

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, name=f"read-{self.popen.pid}", daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip()
            if self.listening_s is None and "listening on" in line:
                self.listening_s = time.perf_counter() - self.started
            self.lines.append(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    @property
    def alerts_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts/monitoring"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return "\n".join(self.lines)[-3000:]

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


@dataclass
class World:
    """The emulator and everything a bot needs to run against it."""

    emulator: Emulator
    config: Config
    signing_secret: str
    tmp: Path
    bench_config: Path  # app.yaml with quick health checks
    alert_token: str = field(default_factory=lambda: secrets.token_hex(16))
    _runs: int = 0

    def env(self, port: int, config_path: Path | None = None) -> dict[str, str]:
        self._runs += 1
        env = {
            **os.environ,
            **self.emulator.env(),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": self.signing_secret,
            "RUNBACK_ALERT_TOKEN": self.alert_token,
            "DATABASE_URL": f"sqlite:///{self.tmp / f'runback-{self._runs}.db'}",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("SLACK_APP_TOKEN", None)  # never Socket Mode here
        if config_path is not None:
            env["RUNBACK_CONFIG"] = str(config_path)
        else:
            env.pop("RUNBACK_CONFIG", None)
        return env

    def launch(self, argv: list[str], config_path: Path | None = None) -> Process:
        port = free_port()
        env = self.env(port, config_path)
        started = time.perf_counter()
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return Process(argv, env, port, popen, started)

    def sender(self, process: Process) -> SlackSender:
        return SlackSender(self.emulator, self.signing_secret, process.url)

    def first_ack(self, process: Process) -> float:
        """Send ``/ops help`` until it is acked with a 200; seconds since launch."""
        sender = self.sender(process)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise BenchError(
                    f"{' '.join(process.argv)} exited with "
                    f"{process.popen.returncode}:\n{process.output()}"
                )
            try:
                response = sender.command("/ops", "help", timeout_s=5)
                if response.status_code == 200:
                    return time.perf_counter() - process.started
            except requests.ConnectionError:
                pass
            time.sleep(0.005)
        raise BenchError(f"no 200 ack within {START_TIMEOUT_S:g}s:\n{process.output()}")

    @contextmanager
    def running(
        self, argv: list[str] = BOT_ARGV, config_path: Path | None = None
    ) -> Iterator[tuple[Process, float]]:
        process = self.launch(argv, config_path)
        try:
            yield process, self.first_ack(process)
        finally:
            process.stop()

    def calls(self, api: str | None = None, since: float = 0.0) -> list[RecordedCall]:
        return [c for c in self.emulator.router.calls.list(api) if c.at >= since]


def make_world(tmp: Path) -> World:
    config = load_config(ROOT / "app.yaml")
    emulator = Emulator(slack_token=BOT_TOKEN).start()
    seed(emulator, config)
    emulator.cloudrun.operation_delay_s = 0.0
    raw = yaml.safe_load((ROOT / "app.yaml").read_text(encoding="utf-8"))
    raw.setdefault("rollback", {}).update(health_checks=1, health_check_interval_s=0)
    bench_config = tmp / "app.bench.yaml"
    bench_config.write_text(
        yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    return World(emulator, config, secrets.token_hex(16), tmp, bench_config)


# -- 1. cold start ----------------------------------------------------------------------------


# What `python -m bot serve` imports before it can answer, in parts (each in a fresh interpreter).
IMPORTS = {
    "slack_bolt + slack_sdk + waitress": "import slack_bolt, slack_bolt.adapter.wsgi, waitress",
    "bot.config (pydantic models)": "import bot.config",
    "sqlalchemy (bot.store)": "import sqlalchemy, sqlalchemy.orm",
    "jinja2 + yaml (bot.render)": "import bot.render",
    "everything serve imports": (
        "import bot.__main__, bot.runtime, bot.slack.app, bot.slack.chat, bot.web, waitress"
    ),
}


def import_seconds(statement: str) -> float:
    code = "import time; t = time.perf_counter(); " + statement + "; print(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return float(done.stdout.strip())


def bench_cold_start(world: World, runs: int) -> dict[str, Any]:
    """Launch -> first 200 ack, for the bot and the minimal Bolt app, alternating."""
    interpreter: list[float] = []
    samples: dict[str, list[float]] = {"bot": [], "minimal": []}
    listening: dict[str, list[float]] = {"bot": [], "minimal": []}
    for attempt in range(runs + 1):  # the first round warms .pyc files and the page cache
        for name, argv in (("bot", BOT_ARGV), ("minimal", MINIMAL_ARGV)):
            with world.running(argv) as (process, seconds):
                if attempt:
                    samples[name].append(seconds)
                    listening[name].append(process.listening_s or float("nan"))
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
        "bot_listening_s": statistics.median(listening["bot"]),
        "minimal_listening_s": statistics.median(listening["minimal"]),
        "interpreter_s": statistics.median(interpreter),
        "imports_s": imports,
        "bot_samples_s": samples["bot"],
        "minimal_samples_s": samples["minimal"],
    }


# -- 2. ack latency -----------------------------------------------------------------------------


def fire(
    sender: SlackSender, commands: Sequence[tuple[str, str]], threads: int
) -> tuple[list[float], float]:
    """Send ``commands`` from ``threads`` closed-loop workers; (ack latencies, wall seconds)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(index: int) -> None:
        mine = commands[index::threads]
        local: list[float] = []
        with requests.Session() as session:
            barrier.wait()
            for command, text in mine:
                started = time.perf_counter()
                response = sender.command(command, text, session=session)
                local.append(time.perf_counter() - started)
                if response.status_code != 200:
                    with lock:
                        errors.append(f"{command} {text}: HTTP {response.status_code}")
        with lock:
            latencies.extend(local)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise BenchError(f"{len(errors)} request(s) not acked with 200, e.g. {errors[0]}")
    return latencies, wall


def wait_responses(world: World, expected: int, since: float, timeout_s: float = 60.0) -> float:
    """Wait until ``expected`` response_url posts arrived since ``since``; returns the last .at."""
    wait_until(
        lambda: len(world.calls("slack.response_url", since)) >= expected,
        timeout_s,
        f"{expected} delayed responses",
    )
    return max(c.at for c in world.calls("slack.response_url", since))


def bench_first_traffic(world: World, sender: SlackSender) -> dict[str, float]:
    """The first /traffic of a fresh bot: it pays for importing the Google client libraries."""
    since = time.time()
    started = time.perf_counter()
    response = sender.command("/traffic", SERVICE)
    ack = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(f"/traffic answered HTTP {response.status_code}")
    answered = wait_responses(world, 1, since)
    return {"ack_s": ack, "response_s": answered - since}


def bench_ack_latency(world: World, process: Process, total: int, threads: int) -> dict[str, Any]:
    sender = world.sender(process)
    result: dict[str, Any] = {"threads": threads, "requests": total}
    for key, command, text in (("ops_help", "/ops", "help"), ("traffic", "/traffic", SERVICE)):
        warm_since = time.time()
        fire(sender, [(command, text)] * threads, threads)  # warm-up: one round
        if command == "/traffic":
            wait_responses(world, threads, warm_since)
        since, cpu = time.time(), process.cpu_s()
        latencies, wall = fire(sender, [(command, text)] * total, threads)
        entry: dict[str, Any] = {
            "p50_s": percentile(latencies, 50),
            "p99_s": percentile(latencies, 99),
            "max_s": max(latencies),
            "throughput_rps": total / wall,
        }
        if command == "/traffic":
            last = wait_responses(world, total, since)
            entry["all_responses_s"] = last - since
        time.sleep(0.1)  # the last handlers finish after their last response
        entry["bot_cpu_per_command_s"] = (process.cpu_s() - cpu) / total
        result[key] = entry
        progress(
            f"ack latency {command} {text}: p50 {ms(entry['p50_s'])} ms, "
            f"p99 {ms(entry['p99_s'])} ms"
        )
    return result


# -- 3. rollback overhead -----------------------------------------------------------------------


def reseed_service(world: World) -> None:
    service = world.config.service(SERVICE)
    assert service is not None
    revisions = [
        {
            "name": f"{SERVICE}-{number}",
            "image": f"us-docker.pkg.dev/{service.project}/apps/{SERVICE}:{version}",
            "age_s": age,
        }
        for number, version, age in SAMPLE_REVISIONS
    ]
    world.emulator.cloudrun.seed_service(
        service.project,
        service.region,
        SERVICE,
        revisions=revisions,
        traffic={revisions[-1]["name"]: 100},
    )


def _card_text(call: RecordedCall) -> str:
    body = call.body if isinstance(call.body, dict) else {}
    return str(body.get("text", ""))


def _is_final(call: RecordedCall) -> bool:
    text = _card_text(call)
    return text.startswith(f"Rollback of {SERVICE}") and text.endswith((": done", ": failed"))


@dataclass
class RollbackRun:
    sent: float
    ack_s: float
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (offset s, api)
    to_patch_s: float = 0.0
    # Cloud Run reads before the PATCH: (api, arrival offset, gap to the bot's next request)
    reads: list[tuple[str, float, float]] = field(default_factory=list)
    done_to_update_s: float = 0.0
    probe_to_final_s: float = 0.0
    total_s: float = 0.0
    outcome: str = ""


def one_rollback(world: World, sender: SlackSender) -> RollbackRun:
    reseed_service(world)
    sent = time.time()
    started = time.perf_counter()
    response = sender.command("/rollback", f"{SERVICE} bench")
    run = RollbackRun(sent=sent, ack_s=time.perf_counter() - started)
    if response.status_code != 200:
        raise BenchError(f"/rollback answered HTTP {response.status_code}")
    wait_until(
        lambda: any(_is_final(c) for c in world.calls("slack.chat.update", sent)),
        30,
        "the rollback's final card",
    )
    calls = world.calls(since=sent)
    run.timeline = [(c.at - sent, c.api) for c in calls]
    final = next(c for c in calls if c.api == "slack.chat.update" and _is_final(c))
    run.outcome = _card_text(final).rsplit(": ", 1)[-1]
    if run.outcome != "done":
        raise BenchError(f"rollback ended {run.outcome!r}; card: {_card_text(final)}")
    patch = next(c for c in calls if c.api == "run.services.patch")
    run.to_patch_s = patch.at - sent
    for call, after in itertools.pairwise(calls):
        if call.at < patch.at and call.api in ("run.services.get", "run.revisions.list"):
            run.reads.append((call.api, call.at - sent, after.at - call.at))
    done = [c for c in calls if c.api == "run.operations.get" and c.at < final.at][-1]
    shifted = next(
        c
        for c in calls
        if c.api == "slack.chat.update" and c.at > done.at and "verifying" in _card_text(c)
    )
    run.done_to_update_s = shifted.at - done.at
    probe = [c for c in calls if c.api == "service.healthz" and c.at < final.at][-1]
    run.probe_to_final_s = final.at - probe.at
    run.total_s = final.at - sent
    return run


def bench_rollbacks(world: World, sender: SlackSender, runs: int) -> dict[str, Any]:
    first = one_rollback(world, sender)  # pays for importing google-cloud-logging (audit)
    measured = []
    for index in range(runs):
        measured.append(one_rollback(world, sender))
        progress(f"rollback {index + 1}/{runs}: patch at +{ms(measured[-1].to_patch_s)} ms")
    med = sorted(measured, key=lambda r: r.to_patch_s)[len(measured) // 2]

    def median_of(get: Callable[[RollbackRun], float]) -> float:
        return statistics.median(get(r) for r in measured)

    return {
        "runs": runs,
        "to_patch_s": median_of(lambda r: r.to_patch_s),
        "to_patch_max_s": max(r.to_patch_s for r in measured),
        "done_to_update_s": median_of(lambda r: r.done_to_update_s),
        "done_to_update_max_s": max(r.done_to_update_s for r in measured),
        "probe_to_final_s": median_of(lambda r: r.probe_to_final_s),
        "total_s": median_of(lambda r: r.total_s),
        "ack_s": median_of(lambda r: r.ack_s),
        "reads": [{"api": api, "at_s": at, "to_next_request_s": gap} for api, at, gap in med.reads],
        "median_timeline": [(round(offset * 1000, 1), api) for offset, api in med.timeline],
        "first_rollback": {
            "to_patch_s": first.to_patch_s,
            "total_s": first.total_s,
            "done_to_update_s": first.done_to_update_s,
        },
        "samples": [
            {
                "to_patch_s": r.to_patch_s,
                "done_to_update_s": r.done_to_update_s,
                "total_s": r.total_s,
            }
            for r in measured
        ],
    }


# -- 4. incident alert -> rollback --------------------------------------------------------------


# What the bot sends for an alert, in order, up to and including the PATCH: the judgement
# (Cloud Run, 2 Monitoring ListTimeSeries, /healthz), then the emergency rollback request.
ALERT_MARKS = (
    ("run.services.get", "first Cloud Run read (judgement)"),
    ("monitoring.timeSeries.list", "first Monitoring ListTimeSeries"),
    ("service.healthz", "/healthz probe"),
    ("run.revisions.list", "rollback: list revisions"),
    ("run.services.patch", "traffic PATCH"),
)


@dataclass
class AlertRun:
    incident: str
    sent: float
    answer_s: float  # POST -> its 200 answer (the alert is recorded and its card posted by then)
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (offset s, api)
    marks: dict[str, float] = field(default_factory=dict)  # api -> first arrival offset
    monitoring_calls: int = 0
    to_patch_s: float = 0.0
    total_s: float = 0.0  # -> the postmortem draft, when the bot is quiet again


def one_alert(world: World, process: Process, incident_id: str) -> AlertRun:
    """An open alert for a revision whose /healthz fails ("roll back now" whatever the
    metrics say; the Monitoring queries still run) until the rollback and its postmortem."""
    reseed_service(world)
    world.emulator.cloudrun.set_behaviour(NEWEST, healthz_status=503)
    body = alert_payload(world.emulator, SERVICE, "open", incident_id)
    files = len(world.emulator.slack.files())
    sent = time.time()
    started = time.perf_counter()
    response = requests.post(
        process.alerts_url,
        params={"token": world.alert_token},
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    run = AlertRun(incident=incident_id, sent=sent, answer_s=time.perf_counter() - started)
    if response.status_code != 200 or response.json().get("status") != "created":
        raise BenchError(f"alert answered HTTP {response.status_code}: {response.text[:300]}")
    # done when the rollback card is final and the postmortem draft (posted after it) is up
    wait_until(
        lambda: (
            any(_is_final(c) for c in world.calls("slack.chat.update", sent))
            and len(world.emulator.slack.files()) > files
        ),
        30,
        f"the rollback and postmortem of alert {incident_id}",
    )
    time.sleep(0.05)  # the bot records the postmortem after its upload; let it finish
    calls = world.calls(since=sent)
    run.timeline = [(c.at - sent, c.api) for c in calls]
    final = next(c for c in calls if c.api == "slack.chat.update" and _is_final(c))
    if not _card_text(final).endswith(": done"):
        raise BenchError(f"the alert's rollback did not end done: {_card_text(final)}")
    for api, _ in ALERT_MARKS:
        run.marks[api] = next(c.at - sent for c in calls if c.api == api)
    run.to_patch_s = run.marks["run.services.patch"]
    run.monitoring_calls = sum(
        1 for c in calls if c.api == "monitoring.timeSeries.list" and c.at - sent < run.to_patch_s
    )
    run.total_s = max(c.at for c in calls) - sent
    return run


def bench_alerts(world: World, process: Process, runs: int) -> dict[str, Any]:
    """Alert POST -> traffic PATCH, Cloud Run operations instant. The first alert of the fresh
    bot imports the Google client libraries (Cloud Logging, Cloud Run, Monitoring over gRPC)
    and opens their connections: reported apart, not in the median."""
    tag = secrets.token_hex(3)
    first = one_alert(world, process, f"0.bench-{tag}-warmup")
    progress(f"alert warm-up (fresh bot): patch at +{ms(first.to_patch_s)} ms")
    measured = []
    for index in range(runs):
        measured.append(one_alert(world, process, f"0.bench-{tag}-{index + 1}"))
        progress(f"alert {index + 1}/{runs}: patch at +{ms(measured[-1].to_patch_s)} ms")
    if any(r.monitoring_calls != 2 for r in [first, *measured]):
        counts = [r.monitoring_calls for r in [first, *measured]]
        raise BenchError(f"expected 2 Monitoring calls before each PATCH, saw {counts}")
    to_patch = [r.to_patch_s for r in measured]
    med = sorted(measured, key=lambda r: r.to_patch_s)[len(measured) // 2]
    return {
        "runs": runs,
        "to_patch_s": statistics.median(to_patch),
        "to_patch_p90_s": percentile(to_patch, 90),
        "to_patch_max_s": max(to_patch),
        "answer_s": statistics.median(r.answer_s for r in measured),
        "marks_s": {
            api: statistics.median(r.marks[api] for r in measured) for api, _ in ALERT_MARKS
        },
        "total_s": statistics.median(r.total_s for r in measured),
        "median_timeline": [(round(offset * 1000, 1), api) for offset, api in med.timeline],
        "warmup": {
            "to_patch_s": first.to_patch_s,
            "answer_s": first.answer_s,
            "marks_s": first.marks,
            "total_s": first.total_s,
        },
        "samples": [
            {"answer_s": r.answer_s, "to_patch_s": r.to_patch_s, "marks_s": r.marks}
            for r in measured
        ],
    }


# -- 5. memory ----------------------------------------------------------------------------------


MEMORY_MIX = (("/ops", "help"), ("/traffic", SERVICE), ("/ops", "whoami"))


def bench_memory(world: World, process: Process, total: int, threads: int) -> dict[str, Any]:
    sender = world.sender(process)
    result: dict[str, Any] = {"at_start_kb": rss_kb(process.pid)}
    bench_first_traffic(world, sender)  # loads the Google client libraries
    result["after_first_traffic_kb"] = rss_kb(process.pid)
    for round_ in (1, 2):
        commands = [MEMORY_MIX[i % len(MEMORY_MIX)] for i in range(total)]
        delayed = sum(1 for command, text in commands if text != "help")
        since = time.time()
        fire(sender, commands, threads)
        wait_responses(world, delayed, since)
        time.sleep(0.2)  # let the handlers' threads finish after their last response
        result[f"after_{round_ * total}_kb"] = rss_kb(process.pid)
        progress(
            f"memory after {round_ * total} commands: "
            f"{result[f'after_{round_ * total}_kb'] / 1024:.1f} MB"
        )
    result["peak_kb"] = rss_kb(process.pid, "VmHWM")
    result["commands"] = total
    return result


# -- 6. release judgement -----------------------------------------------------------------------
#
# Phases 6 and 7 run the bot in this process: a console Sandbox (bot/sandbox/console.py) with
# its own emulators, health checks that do not sleep, and a release started with `/deploy`.

RELEASE_IMAGE = f"us-docker.pkg.dev/runback-sandbox/apps/{SERVICE}:9.9.9"
MONITORING = "monitoring.timeSeries.list"
HEALTHZ = "service.healthz"
RELEASE_FINAL = ("succeeded", "rolled_back", "failed", "cancelled")
SHORT = {MONITORING: "Monitoring", HEALTHZ: "/healthz"}
APPROVE = "Approve 100%"  # the release card's button for a tech lead
ENGINE_TICK_S = 1.0  # Sandbox calls engine.start(), whose ticker runs every 1 s of real time


@contextmanager
def release_sandbox(config: Config, speed: float = 1.0, scheduler: bool = True) -> Iterator[Any]:
    """A Sandbox on app.yaml with health checks that do not sleep, closed afterwards.
    ``scheduler=False``: no background ticker, only `wait` lines move due work on."""
    from bot.sandbox.console import Sandbox

    rollback = config.rollback.model_copy(update={"health_check_interval_s": 0})
    settings = config.model_copy(update={"rollback": rollback})
    box = Sandbox(settings, speed=speed, scheduler=scheduler)
    try:
        yield box
    finally:
        box.close()


def start_release(box: Any) -> str:
    """`/deploy` as marta (a senior developer); the id of the release it started."""
    box.run_line("as marta")
    output = box.run_line(f"/deploy {SERVICE} {RELEASE_IMAGE}")
    store = box.runtime.deps.store
    ids = [o.id for o in store.unfinished_operations() if o.kind == "release"]
    if len(ids) != 1:
        raise BenchError("/deploy started no release:\n" + "\n".join(output))
    return ids[0]


def calls_between(box: Any, since: float) -> list[RecordedCall]:
    return [c for c in box.emulator.router.calls.list() if c.at >= since]


@dataclass
class JudgementRun:
    wall_s: float
    monitoring: int
    probes: int
    requests: int  # every emulator request in the meantime (the judgement's, nothing else)
    marks: list[tuple[str, float]]  # (api, arrival after the call began, s)
    verdict: str


def one_judgement(box: Any, operation: Any) -> JudgementRun:
    """Call ``release.judging.judge_green`` on the live operation, as its judging step does; what
    it sent is read from the emulator's request log."""
    from bot.ops import release as release_ops

    since = time.time()
    started = time.perf_counter()
    judgement = release_ops.judging.judge_green(box.runtime.deps, operation)
    wall = time.perf_counter() - started
    calls = calls_between(box, since)
    return JudgementRun(
        wall_s=wall,
        monitoring=sum(1 for c in calls if c.api == MONITORING),
        probes=sum(1 for c in calls if c.api == HEALTHZ),
        requests=len(calls),
        marks=[(c.api, c.at - since) for c in calls],
        verdict=str(judgement.verdict),
    )


def engine_judgements(box: Any, operation_id: str) -> list[dict[str, Any]]:
    """`wait 1m` until the release asks for 100%; each wait that made exactly one judgement
    (the engine's own, at 10% then 50%) gives its Monitoring and /healthz requests."""
    store = box.runtime.deps.store
    seen: list[dict[str, Any]] = []
    for _ in range(8):
        operation = store.operation(operation_id)
        if operation.state != "judging":
            break
        before = len(operation.data["judgements"])
        since = time.time()
        box.run_line("wait 1m")
        calls = calls_between(box, since)
        judgements = store.operation(operation_id).data["judgements"]
        if len(judgements) - before != 1:
            continue
        monitoring = [c.at for c in calls if c.api == MONITORING]
        probes = [c.at for c in calls if c.api == HEALTHZ]
        seen.append(
            {
                "percent": judgements[-1]["percent"],
                "verdict": judgements[-1]["verdict"],
                "monitoring": len(monitoring),
                "probes": len(probes),
                "monitoring_to_probe_s": probes[-1] - monitoring[0]
                if monitoring and probes
                else None,
            }
        )
    state = store.operation(operation_id).state
    if state != "awaiting_approval":
        raise BenchError(f"the release did not reach awaiting_approval but {state}")
    return seen


def bench_release_judgement(world: World, runs: int) -> dict[str, Any]:
    """One judgement of green: 2 Monitoring ListTimeSeries (request count, P95) + 1 /healthz."""
    # no background ticker: nothing but the timed call runs while it is timed
    with release_sandbox(world.config, scheduler=False) as box:
        operation_id = start_release(box)
        # past the warm-up, half an interval before the engine's first judgement falls due
        release = world.config.release
        box.run_line(f"wait {release.warmup_s + release.judge_interval_s / 2:g}s")
        operation = box.runtime.deps.store.operation(operation_id)
        percent = operation.data["steps"][operation.data["step"]]
        if operation.state != "judging" or percent != 10:
            raise BenchError(f"expected the release judging at 10%: {operation.state} {percent}%")
        first = one_judgement(box, operation)  # creates the Monitoring client (gRPC channel)
        measured = [one_judgement(box, operation) for _ in range(runs)]
        progress(
            f"release judgement: median {ms(statistics.median(r.wall_s for r in measured))} ms, "
            f"{measured[0].monitoring} Monitoring + {measured[0].probes} probe"
        )
        engine = engine_judgements(box, operation_id)
    counts = [(r.monitoring, r.probes) for r in [first, *measured]]
    counts += [(e["monitoring"], e["probes"]) for e in engine]
    walls = [r.wall_s for r in measured]
    marks: dict[str, list[float]] = {}
    for run in measured:
        for index, (api, at) in enumerate(run.marks):
            marks.setdefault(f"{index + 1}. {api}", []).append(at)
    return {
        "runs": runs,
        "wall_s": statistics.median(walls),
        "wall_p90_s": percentile(walls, 90),
        "wall_max_s": max(walls),
        "first_wall_s": first.wall_s,
        "marks_s": {label: statistics.median(ats) for label, ats in marks.items()},
        "calls": sorted({f"{m} Monitoring + {p} probe" for m, p in counts}),
        "exact": all(c == (2, 1) for c in counts),
        "requests": sorted({r.requests for r in [first, *measured]}),
        "verdicts": sorted({r.verdict for r in measured}),
        "engine": engine,
        "samples_s": walls,
    }


# -- 7. a whole release in a sandbox at --speed --------------------------------------------------


def configured_waits_s(config: Config, steps: Sequence[int]) -> float:
    """Sandbox seconds a release must sit out when every judgement says proceed: warm-up and
    one judge interval per canary step; at 100%, judgements every interval until warm-up +
    validation have passed."""
    release = config.release
    at_full = release.judge_interval_s * max(
        1, math.ceil(release.validation_s / release.judge_interval_s)
    )
    return sum(
        release.warmup_s + (at_full if percent == 100 else release.judge_interval_s)
        for percent in steps
    )


def poll_state(store: Any, operation_id: str, wanted: Sequence[str], timeout_s: float) -> str:
    """Poll the store every 0.1 s of real time (the sandbox's own clock runs on meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = store.operation(operation_id).state
        if state in wanted:
            return state
        if state in RELEASE_FINAL:
            raise BenchError(f"the release ended {state}, waiting for {' or '.join(wanted)}")
        if time.monotonic() > deadline:
            raise BenchError(f"the release stayed {state} for {timeout_s:g}s")
        time.sleep(0.1)


def bursts(calls: Sequence[RecordedCall], gap_s: float = 0.2) -> list[float]:
    """Spans (first -> last request) of the bot's bursts of requests. Work before a burst's
    first request or after its last (SQLite, rendering) is not seen: a lower bound."""
    spans: list[float] = []
    start = previous = None
    for call in calls:
        if previous is None or call.at - previous > gap_s:
            if start is not None and previous is not None:
                spans.append(previous - start)
            start = call.at
        previous = call.at
    if start is not None and previous is not None:
        spans.append(previous - start)
    return spans


def bench_sandbox_release(world: World, speed: float) -> dict[str, Any]:
    """`/deploy` -> 10% -> 50% -> Approve 100% (luis, a tech lead) -> validation -> succeeded,
    in a Sandbox whose clock runs ``speed`` times faster, waiting in real time (no `wait`).

    The bot's overhead is not measured inside it (its code is not patched): it is estimated as
    real time beyond the configured waits / speed, split into the click, the bot's request
    bursts (a lower bound of its busy time) and the rest, mostly due times caught only at the
    engine's next 1 s tick."""
    with release_sandbox(world.config, speed) as box:
        store = box.runtime.deps.store
        since, sandbox_started = time.time(), box.clock.time()
        operation_id = start_release(box)
        limit = configured_waits_s(world.config, store.operation(operation_id).data["steps"])
        timeout = 3 * limit / speed + 30
        poll_state(store, operation_id, ("awaiting_approval",), timeout)
        # the state is committed just before the card with the button is updated
        wait_until(
            lambda: find_button(box.emulator.slack.messages(), APPROVE) is not None,
            10,
            f"the {APPROVE} button",
            poll_s=0.01,
        )
        asked = time.time()
        box.run_line("as luis")
        box.run_line(f"click {APPROVE}")
        approved = time.time()
        state = poll_state(store, operation_id, RELEASE_FINAL, timeout)
        done, sandbox_done = time.time(), box.clock.time()
        if state != "succeeded":
            raise BenchError(f"the release ended {state}")
        box.runtime.engine.wait_idle(timeout_s=10)  # the release chart, posted after the end
        operation = store.operation(operation_id)
        calls = calls_between(box, since)
    waits = limit / speed
    total = done - since
    approval = approved - asked
    overhead = total - waits
    busy = sum(bursts([c for c in calls if c.at < asked or approved <= c.at <= done]))
    late = late_by_s(world.config, operation.data)
    progress(
        f"sandbox release at speed {speed:g}: {total:.1f} s real, "
        f"{sandbox_done - sandbox_started:.0f} s sandbox (waits {limit:.0f} s)"
    )
    return {
        "speed": speed,
        "total_s": total,
        "sandbox_s": sandbox_done - sandbox_started,
        "configured_waits_s": limit,
        "waits_real_s": waits,
        "overhead_s": overhead,
        "approval_s": approval,
        "busy_s": busy,
        "rest_s": overhead - approval - busy,
        "tick_s": ENGINE_TICK_S,
        "judgements": [
            {"percent": j["percent"], "verdict": j["verdict"], "late_s": lateness}
            for j, lateness in zip(operation.data["judgements"], late, strict=True)
        ],
        "late_median_s": statistics.median(late),
        "calls": {
            api: sum(1 for c in calls if c.api == api)
            for api in ("run.services.patch", MONITORING, HEALTHZ, "service.metrics")
        },
        "requests": len(calls),
        "timeline": [(round((c.at - since) * 1000, 1), c.api) for c in calls],
    }


def late_by_s(config: Config, data: dict[str, Any]) -> list[float]:
    """Sandbox seconds each judgement came after it fell due (warm-up + interval after its
    shift, or an interval after the judgement before it at the same step)."""
    release = config.release
    shifted = {h["percent"]: datetime.fromisoformat(h["at"]).timestamp() for h in data["history"]}
    previous: dict[int, float] = {}
    late = []
    for judgement in data["judgements"]:
        percent, at = judgement["percent"], datetime.fromisoformat(judgement["at"]).timestamp()
        if percent in previous:
            due = previous[percent] + release.judge_interval_s
        else:
            due = shifted[percent] + release.warmup_s + release.judge_interval_s
        late.append(at - due)
        previous[percent] = at
    return late


# -- report -------------------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: information only

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def rows_for(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    cold = results.get("cold_start")
    if cold:
        rows += [
            Row(
                "cold start: bot, launch -> first 200 ack (median)",
                f"{ms(cold['bot_s'])} ms",
                "< 1000 ms",
                cold["bot_s"] < 1.0,
            ),
            Row("cold start: minimal Bolt app (median)", f"{ms(cold['minimal_s'])} ms"),
            Row(
                "cold start: bot / minimal",
                f"{cold['ratio']:.2f}x",
                "<= 1.5x",
                cold["ratio"] <= 1.5,
            ),
            Row(
                "  printed 'listening': bot / minimal",
                f"{ms(cold['bot_listening_s'])} / {ms(cold['minimal_listening_s'])} ms",
            ),
            Row("  bare `python -c pass`", f"{ms(cold['interpreter_s'])} ms"),
        ]
        rows += [
            Row(f"  import {label}", f"{ms(seconds)} ms")
            for label, seconds in cold["imports_s"].items()
        ]
    first = results.get("first_traffic")
    if first:
        rows += [
            Row("first /traffic of a fresh bot: ack", f"{ms(first['ack_s'])} ms"),
            Row("first /traffic of a fresh bot: answer posted", f"{ms(first['response_s'])} ms"),
        ]
    acks = results.get("ack_latency")
    if acks:
        for key, label in (("ops_help", "/ops help"), ("traffic", f"/traffic {SERVICE}")):
            entry = acks[key]
            head = f"ack {label}, {acks['threads']} concurrent, {acks['requests']} req"
            rows += [
                Row(f"{head}: p50", f"{ms(entry['p50_s'])} ms"),
                Row(f"{head}: p99", f"{ms(entry['p99_s'])} ms", "< 100 ms", entry["p99_s"] < 0.1),
                Row(
                    f"  {label}: throughput / bot CPU per command",
                    f"{entry['throughput_rps']:.0f}/s / {ms(entry['bot_cpu_per_command_s'])} ms",
                ),
            ]
        rows.append(
            Row(
                f"  all {acks['requests']} /traffic answers posted after",
                f"{ms(acks['traffic']['all_responses_s'])} ms",
            )
        )
    roll = results.get("rollback")
    if roll:
        rows.append(
            Row(
                "rollback (a): command sent -> traffic PATCH (median)",
                f"{ms(roll['to_patch_s'])} ms",
                "< 150 ms",
                roll["to_patch_s"] < 0.15,
            )
        )
        rows += [
            Row(
                f"  Cloud Run read {read['api']}: arrived / next request after",
                f"+{ms(read['at_s'])} / {ms(read['to_next_request_s'])} ms",
            )
            for read in roll["reads"]
        ]
        rows += [
            Row(
                "rollback (b): operation done -> 'shifted' card update (median)",
                f"{ms(roll['done_to_update_s'])} ms",
                "< 150 ms",
                roll["done_to_update_s"] < 0.15,
            ),
            Row("  (a) + (b)", f"{ms(roll['to_patch_s'] + roll['done_to_update_s'])} ms"),
            Row(
                "  healthz probe -> final card update (median)",
                f"{ms(roll['probe_to_final_s'])} ms",
            ),
            Row("  command sent -> final card, end to end (median)", f"{ms(roll['total_s'])} ms"),
        ]
    fresh = results.get("fresh_bot_rollback")
    if fresh:
        rows.append(
            Row(
                "  /rollback as a fresh bot's first command: (a) / end to end",
                f"{ms(fresh['to_patch_s'])} / {ms(fresh['total_s'])} ms",
            )
        )
    alerts = results.get("alerts")
    if alerts:
        warmup = alerts["warmup"]
        rows += [
            Row(
                "incident: alert POST -> traffic PATCH (median)",
                f"{ms(alerts['to_patch_s'])} ms",
                "< 200 ms",
                alerts["to_patch_s"] < 0.2,
            ),
            Row(
                f"  p90 / max of {alerts['runs']} alerts",
                f"{ms(alerts['to_patch_p90_s'])} / {ms(alerts['to_patch_max_s'])} ms",
            ),
            Row("  alert answered 200 (median)", f"{ms(alerts['answer_s'])} ms"),
        ]
        rows += [
            Row(f"  -> {label} (median)", f"+{ms(alerts['marks_s'][api])} ms")
            for api, label in ALERT_MARKS
        ]
        rows += [
            Row("  alert POST -> postmortem posted (median)", f"{ms(alerts['total_s'])} ms"),
            Row(
                "  a fresh bot's first alert (warm-up): 200 / PATCH",
                f"{ms(warmup['answer_s'])} / {ms(warmup['to_patch_s'])} ms",
            ),
        ]
    memory = results.get("memory")
    if memory:
        total = memory["commands"]
        after = memory[f"after_{total}_kb"] / 1024
        rows += [
            Row("RSS of a fresh bot after its first ack", f"{memory['at_start_kb'] / 1024:.1f} MB"),
            Row(
                "  after its first /traffic (Google libraries)",
                f"{memory['after_first_traffic_kb'] / 1024:.1f} MB",
            ),
            Row(f"RSS after {total} slash commands", f"{after:.1f} MB", "< 150 MB", after < 150),
            Row(
                f"  after {2 * total} (growth check)",
                f"{memory[f'after_{2 * total}_kb'] / 1024:.1f} MB",
            ),
            Row("  peak RSS (VmHWM)", f"{memory['peak_kb'] / 1024:.1f} MB"),
        ]
    judge = results.get("release_judgement")
    if judge:
        marks = " / ".join(f"+{ms(at)}" for at in judge["marks_s"].values())
        engine = " / ".join(
            f"{e['percent']}%: {e['monitoring']} + {e['probes']}"
            + (
                f", {ms(e['monitoring_to_probe_s'])} ms"
                if e["monitoring_to_probe_s"] is not None
                else ""
            )
            for e in judge["engine"]
        )
        rows += [
            Row(
                f"release judgement (judging.judge_green), median of {judge['runs']}",
                f"{ms(judge['wall_s'])} ms",
            ),
            Row(
                "  p90 / max",
                f"{ms(judge['wall_p90_s'])} / {ms(judge['wall_max_s'])} ms",
            ),
            Row(
                "  requests "
                + ", ".join(
                    SHORT.get(api, api)
                    for api in (label.split(". ", 1)[1] for label in judge["marks_s"])
                )
                + " arrive after (median)",
                f"{marks} ms",
            ),
            Row(
                "  the first one (creates the Monitoring client)",
                f"{ms(judge['first_wall_s'])} ms",
            ),
            Row(
                "release judgement: requests per judgement",
                ", ".join(judge["calls"]),
                "2 Monitoring + 1 probe",
                judge["exact"],
            ),
            Row(
                "  engine's judgements: calls, 1st Monitoring -> /healthz",
                engine,
            ),
        ]
    sandbox = results.get("sandbox_release")
    if sandbox:
        speed = f"{sandbox['speed']:g}"
        calls = sandbox["calls"]
        judgements = sandbox["judgements"]
        rows += [
            Row(
                f"sandbox release at speed {speed}: /deploy -> succeeded, real time",
                f"{sandbox['total_s']:.2f} s",
            ),
            Row(
                "  sandbox time elapsed / configured waits",
                f"{sandbox['sandbox_s']:.0f} / {sandbox['configured_waits_s']:.0f} s",
            ),
            Row(
                f"  real time beyond the waits ({sandbox['configured_waits_s']:.0f} s / {speed})",
                f"{sandbox['overhead_s']:.2f} s",
            ),
            Row("    Approve 100% click -> 100% applied", f"{sandbox['approval_s']:.2f} s"),
            Row(
                "    bot's request bursts (lower bound of its busy time)",
                f"{sandbox['busy_s']:.2f} s",
            ),
            Row(
                f"    rest: next {sandbox['tick_s']:g} s engine tick "
                f"(= {sandbox['tick_s'] * sandbox['speed']:g} s sandbox) after each due, polling",
                f"{sandbox['rest_s']:.2f} s",
            ),
            Row(
                f"  {len(judgements)} judgements ("
                + "/".join(str(j["percent"]) for j in judgements)
                + "%): judged after due by (median)",
                f"{sandbox['late_median_s']:.0f} s sandbox = "
                f"{sandbox['late_median_s'] / sandbox['speed']:.2f} s real",
            ),
            Row(
                "  requests: PATCH / Monitoring / healthz (smoke + judgements)",
                f"{calls['run.services.patch']} / {calls[MONITORING]} / {calls[HEALTHZ]}",
            ),
        ]
    return rows


def print_table(rows: list[Row]) -> None:
    headers = ("metric", "value", "target", "")
    widths = [
        max(len(headers[0]), *(len(r.metric) for r in rows)),
        max(len(headers[1]), *(len(r.value) for r in rows)),
        max(len(headers[2]), *(len(r.target) for r in rows)),
        4,
    ]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print(line)
    for row in rows:
        cells = (
            row.metric.ljust(widths[0]),
            row.value.rjust(widths[1]),
            row.target.ljust(widths[2]),
            row.verdict,
        )
        print("  ".join(cells).rstrip())
    print(line)


def print_timeline(title: str, timeline: list[tuple[float, str]]) -> None:
    print(f"\nRequests the bot sent during {title}:")
    for offset, api in timeline:
        print(f"  +{offset:7.1f}  {api}")


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cold-runs", type=int, default=5, help="launches of each app (5)")
    parser.add_argument(
        "--requests", type=int, default=400, help="slash commands per ack-latency series (400)"
    )
    parser.add_argument("--threads", type=int, default=20, help="concurrent senders (20)")
    parser.add_argument("--rollbacks", type=int, default=8, help="measured rollbacks (8)")
    parser.add_argument(
        "--alerts", type=int, default=8, help="measured incident alerts, after a warm-up (8)"
    )
    parser.add_argument(
        "--memory-commands", type=int, default=1000, help="slash commands before reading RSS (1000)"
    )
    parser.add_argument(
        "--judgements", type=int, default=20, help="measured release judgements (20)"
    )
    parser.add_argument(
        "--release-speed",
        type=float,
        default=60.0,
        help="sandbox clock speed of the whole release (60: a minute of release per second)",
    )
    parser.add_argument(
        "--no-timeline",
        action="store_true",
        help="do not print the requests of the median rollback and alert",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="runback-bench-") as tmp:
        world = make_world(Path(tmp))
        try:
            run_phases(world, args, results)
        finally:
            world.emulator.stop()
    results["bench_wall_s"] = time.perf_counter() - started

    rows = rows_for(results)
    print()
    print_table(rows)
    if not args.no_timeline:
        print_timeline(
            "the median rollback (ms after the command was sent)",
            results["rollback"]["median_timeline"],
        )
        print_timeline(
            "the median alert (ms after it was sent)", results["alerts"]["median_timeline"]
        )
    results["table"] = [
        {"metric": r.metric.strip(), "value": r.value, "target": r.target, "verdict": r.verdict}
        for r in rows
    ]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    misses = sum(1 for r in rows if r.ok is False)
    shown = RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS
    print(
        f"\n{len(rows)} figures, {misses} miss(es), in {results['bench_wall_s']:.0f} s. "
        f"JSON: {shown}"
    )
    return 0


def run_phases(world: World, args: argparse.Namespace, results: dict[str, Any]) -> None:
    progress("1/7 cold start")
    results["cold_start"] = bench_cold_start(world, args.cold_runs)
    progress("2/7 ack latency and 3/7 rollback overhead (one bot, quick health checks)")
    with world.running(config_path=world.bench_config) as (process, _):
        sender = world.sender(process)
        results["first_traffic"] = bench_first_traffic(world, sender)
        results["ack_latency"] = bench_ack_latency(world, process, args.requests, args.threads)
        results["rollback"] = bench_rollbacks(world, sender, args.rollbacks)
    with world.running(config_path=world.bench_config) as (process, _):
        first = one_rollback(world, world.sender(process))
        results["fresh_bot_rollback"] = {"to_patch_s": first.to_patch_s, "total_s": first.total_s}
    progress("4/7 incident alert -> rollback (a fresh bot, quick health checks)")
    with world.running(config_path=world.bench_config) as (process, _):
        results["alerts"] = bench_alerts(world, process, args.alerts)
    progress("5/7 memory (a fresh bot)")
    with world.running(config_path=world.bench_config) as (process, _):
        results["memory"] = bench_memory(world, process, args.memory_commands, args.threads)
    progress("6/7 release judgement (an in-process Sandbox)")
    results["release_judgement"] = bench_release_judgement(world, args.judgements)
    progress(f"7/7 a whole release in a Sandbox at speed {args.release_speed:g}")
    results["sandbox_release"] = bench_sandbox_release(world, args.release_speed)


if __name__ == "__main__":
    sys.exit(main())
