"""Shared by the bench scenarios: signed Slack requests, bot processes and the emulator world."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import requests
import yaml
from sqlalchemy import text

from bot.config import Config, load_config
from bot.database import make_engine
from bot.sandbox.emulator.http import RecordedCall
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import SAMPLE_REVISIONS, seed

ROOT = Path(__file__).resolve().parents[1]


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


@dataclass(frozen=True)
class SignedCommand:
    body: bytes
    headers: dict[str, str]


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
        return self.send(self.signed(command, text, user, channel), session, timeout_s)

    def signed(
        self, command: str, text: str, user: str = ON_CALL, channel: str = "C0INCIDENTS"
    ) -> SignedCommand:
        """The request Slack would send: built and signed before it is sent, as Slack's is, so
        that a timer around ``send`` measures the bot's answer and not this client's work."""
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
        return SignedCommand(body, headers)

    def send(
        self,
        request: SignedCommand,
        session: requests.Session | None = None,
        timeout_s: float = 10.0,
    ) -> requests.Response:
        poster = session or requests
        return poster.post(self.url, data=request.body, headers=request.headers, timeout=timeout_s)


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

    def env(
        self, port: int, config_path: Path | None = None, database_url: str | None = None
    ) -> dict[str, str]:
        self._runs += 1
        database_url = database_url or f"sqlite:///{self.tmp / f'runback-{self._runs}.db'}"
        return serve_env(
            self.emulator,
            port,
            database_url,
            self.signing_secret,
            config_path,
            RUNBACK_ALERT_TOKEN=self.alert_token,
        )

    def launch(
        self, argv: list[str], config_path: Path | None = None, database_url: str | None = None
    ) -> Process:
        port = free_port()
        env = self.env(port, config_path, database_url)
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
            acked_s = self.first_ack(process)
            if argv is BOT_ARGV:  # serve acks before the bot is loaded; measure the loaded bot
                wait_until(lambda: _healthy(process), START_TIMEOUT_S, "the bot to load")
            yield process, acked_s
        finally:
            process.stop()

    def calls(self, api: str | None = None, since: float = 0.0) -> list[RecordedCall]:
        return [c for c in self.emulator.router.calls.list(api) if c.at >= since]


def _healthy(process: Process) -> bool:
    try:
        url = f"http://127.0.0.1:{process.port}/healthz"
        return requests.get(url, timeout=START_TIMEOUT_S).status_code == 200
    except requests.ConnectionError:
        return False


def make_world(tmp: Path) -> World:
    config = load_config(ROOT / "app.yaml")
    emulator = Emulator(slack_token=BOT_TOKEN).start()
    seed(emulator, config)
    emulator.cloudrun.operation_delay_s = 0.0
    bench_config = write_config(tmp / "app.bench.yaml", rollback={"health_checks": 1})
    return World(emulator, config, secrets.token_hex(16), tmp, bench_config)


def write_config(path: Path, source: Path = ROOT / "app.yaml", **overrides: Any) -> Path:
    """``source`` (the shipped app.yaml) written to ``path`` with health checks that do not
    sleep and production releases not blocked by readiness (the sandbox never drilled). Each of
    ``overrides`` is a section of the file: a mapping is merged into it, anything else replaces
    it."""
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    raw.setdefault("rollback", {})["health_check_interval_s"] = 0
    raw.setdefault("readiness", {})["block_production"] = False
    for section, value in overrides.items():
        if isinstance(value, dict):
            raw.setdefault(section, {}).update(value)
        else:
            raw[section] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def serve_env(
    emulator: Emulator,
    port: int,
    database_url: str,
    signing_secret: str,
    config_path: Path | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of a `python -m bot serve` (or the minimal app) on ``port`` over HTTP,
    wired to ``emulator``, with ``extra`` on top; without ``config_path``, the shipped app.yaml."""
    env = {
        **os.environ,
        **emulator.env(),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": signing_secret,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.pop("SLACK_APP_TOKEN", None)  # never Socket Mode here
    if config_path is not None:
        env["RUNBACK_CONFIG"] = str(config_path)
    else:
        env.pop("RUNBACK_CONFIG", None)
    return env


@contextmanager
def fresh_schema(url: str, prefix: str = "runback_bench") -> Iterator[str]:
    """A schema of its own on the PostgreSQL server at ``url`` (named ``prefix`` and a random
    suffix); yields the URL that uses it, and drops it with all it holds afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in url else "?"
        try:
            yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


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


def card_text(call: RecordedCall) -> str:
    body = call.body if isinstance(call.body, dict) else {}
    return str(body.get("text", ""))


# The card is told to Slack off the workflow's thread, newest state first: a fast rollback's
# card may skip intermediate states, or be posted already final.
CARD_APIS = ("slack.chat.update", "slack.chat.postMessage")


def is_final(call: RecordedCall) -> bool:
    text = card_text(call)
    return (
        call.api in CARD_APIS
        and text.startswith(f"Rollback of {SERVICE}")
        and text.endswith((": done", ": failed"))
    )
