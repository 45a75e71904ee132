"""The helpers test modules share: one copy each (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import yaml

from bot.config import load_config
from bot.ops.rollback import RollbackData
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import seed
from bot.sandbox.slack_payloads import signed_headers, slash_command
from bot.store import Operation, Store

if TYPE_CHECKING:
    from bot.sandbox.console import Sandbox

REPO = Path(__file__).resolve().parents[1]
SECRET = "test-signing-secret"  # the Slack signing secret of a `python -m bot serve` under test
TOKEN = "xoxb-test"  # its bot token, the one the Slack emulator takes
SERVICE = "wa-backend"  # the shipped app.yaml's production service

T = TypeVar("T")


# -- waiting on state, never on the clock ------------------------------------------------------


def wait_until(
    check: Callable[[], T],
    what: str = "condition",
    timeout_s: float = 30.0,
    describe: Callable[[], str] | None = None,
    interval_s: float = 0.02,
) -> T:
    """``check``'s first truthy value; an AssertionError naming ``what`` (and ``describe()``)
    when none comes within ``timeout_s``: generous, as two cores are shared by parallel runs."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f": {describe()}" if describe else ""
            raise AssertionError(f"timed out waiting for {what}{detail}")
        time.sleep(interval_s)


def free_port() -> int:
    """A port the kernel just said is free on 127.0.0.1 (never a fixed one: runs are parallel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeClock:
    """Epoch seconds that move only when told: the emulators' and adapters' ``now``."""

    def __init__(self, now: float = 1_750_000_045.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def window(self, seconds: float = 300.0) -> tuple[datetime, datetime]:
        """The ``seconds`` up to now, as a metrics query asks for them."""
        end = datetime.fromtimestamp(self.now, UTC)
        return end - timedelta(seconds=seconds), end


# -- the sandbox (in-process) ------------------------------------------------------------------


def run_lines(box: Sandbox, *lines: str) -> list[str]:
    """What the console prints for ``lines``, one entry per printed line."""
    return [out for line in lines for out in box.run_line(line)]


def run(box: Sandbox, *lines: str) -> str:
    """What the console prints for ``lines``, as one text."""
    return "\n".join(run_lines(box, *lines))


def serving(box: Sandbox, service: str = SERVICE) -> dict[str, int]:
    """The revisions of ``service`` that have traffic, and their percent."""
    rows = box.emulator.cloudrun.traffic(service)
    return {r["revision"]: r["percent"] for r in rows if r["percent"]}


def failure_code(operation: Operation) -> str:
    """Why a rollback failed, as its typed data keeps it ("" when it has not failed)."""
    error = RollbackData.of(operation).error
    return error.code if error else ""


def patches(box: Sandbox) -> list[Any]:
    """The Cloud Run ``services.patch`` calls the emulator received, oldest first."""
    return box.emulator.router.calls.list("run.services.patch")


# -- `python -m bot serve` as a process ----------------------------------------------------------


def app_yaml(tmp_path: Path, **sections: Any) -> Path:
    """The shipped app.yaml as ``tmp_path / "app.yaml"``, with each of ``sections`` merged into
    its section of the file (a mapping) or replacing it (anything else)."""
    data = yaml.safe_load((REPO / "app.yaml").read_text())
    for section, value in sections.items():
        if isinstance(value, dict):
            data.setdefault(section, {}).update(value)
        else:
            data[section] = value
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def bot_config(tmp_path: Path, **overrides: Any) -> Path:
    """``app_yaml`` for a bot under test: health checks that do not sleep, and production
    releases not blocked by the sandbox's failing readiness checklist (as conftest's
    ``sandbox_config``), then ``overrides`` (merged the same way)."""
    sections: dict[str, Any] = {
        "rollback": {"health_check_interval_s": 0},
        "readiness": {"block_production": False},
    }
    for section, value in overrides.items():
        known = sections.get(section)
        merged = isinstance(value, dict) and isinstance(known, dict)
        sections[section] = {**known, **value} if merged else value
    return app_yaml(tmp_path, **sections)


def serve_env(
    emulator: Emulator, port: int, database_url: str, config_path: Path, **extra: str
) -> dict[str, str]:
    """The environment of a `python -m bot serve` on ``port`` over HTTP, wired to ``emulator``:
    the test's own environment without Runback's, Cloud Run's (``K_*``) or Socket Mode's
    variables, so only these and ``extra`` (e.g. ``RUNBACK_LEASE_S="1"``) configure it."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RUNBACK_", "K_")) and key != "SLACK_APP_TOKEN"
    }
    return {
        **inherited,
        **emulator.env(),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": database_url,
        "RUNBACK_CONFIG": str(config_path),
        # each bot here lives seconds: its 2 s of warm-up CPU would only slow the suite (it is
        # tested in-process, tests/test_http.py; the deploy walkthrough serves with it on)
        "RUNBACK_WARM_UP": "off",
        **extra,
    }


class BotProcess:
    """``python -m bot serve`` in its own process, with its output in a log file."""

    def __init__(
        self, env: dict[str, str], port: int, log_dir: Path, start_timeout_s: float = 30.0
    ) -> None:
        self.env, self.port, self.log_dir = env, port, log_dir
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._store: Store | None = None
        self._starts = 0

    @property
    def store(self) -> Store:
        """The bot's own database, read by the test: what it committed is what it did."""
        if self._store is None:
            self._store = Store(self.env["DATABASE_URL"])
        return self._store

    def last_operation(self) -> Operation | None:
        from sqlalchemy import select

        with self.store.session() as session:
            query = select(Operation).order_by(Operation.created_at.desc())
            return session.scalars(query).first()

    def start(self) -> None:
        # Output goes to a file: an unread pipe fills up and blocks a bot that logs a lot.
        self._starts += 1
        self.log = self.log_dir / f"bot-{self._starts}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve"],
                cwd=REPO,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            self._healthy,
            what="bot to start",
            timeout_s=self.start_timeout_s,
            describe=self.log_tail,
            interval_s=0.05,
        )

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def _healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=0.5).ok
        except requests.RequestException:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """The test is over: SIGTERM, and SIGKILL if the bot is not gone within 3 s (its exit
        waits for in-flight work, e.g. a reply to a response_url that never answers)."""
        if self._store is not None:
            self._store.close()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


B = TypeVar("B", bound=BotProcess)


@contextmanager
def bot_on_emulators(
    kind: type[B], tmp_path: Path, database_url: str, config_path: Path, **extra: str
) -> Iterator[tuple[Emulator, B]]:
    """A ``kind`` of `python -m bot serve` (not started yet) on ``database_url``, wired to
    emulators seeded from ``config_path``; stopped, and the emulators too, afterwards."""
    emulator = Emulator(slack_token=TOKEN).start()
    try:
        seed(emulator, load_config(config_path))
        port = free_port()
        bot = kind(serve_env(emulator, port, database_url, config_path, **extra), port, tmp_path)
        try:
            yield emulator, bot
        finally:
            bot.stop()
    finally:
        emulator.stop()


def send_command(
    emulator: Emulator, port: int, command: str, text: str, user: str = "U0ANA"
) -> None:
    """A signed slash command from ``user`` in #incidents to the bot listening on ``port``."""
    url = emulator.slack.new_response_url("C0INCIDENTS", user)
    body = slash_command(command, text, user, user.lower(), "C0INCIDENTS", "incidents", url)
    response = requests.post(
        f"http://127.0.0.1:{port}/slack/events",
        data=body.encode(),
        headers=signed_headers(SECRET, body),
        timeout=5,
    )
    assert response.status_code == 200


def card_text(emulator: Emulator) -> str:
    """The text of the bot's first card in #incidents ("" before there is one)."""
    cards = [m for m in emulator.slack.messages("C0INCIDENTS") if not m.get("ephemeral_to")]
    return cards[0]["text"] if cards else ""
