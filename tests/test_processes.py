"""Whole processes, as users run them: `python -m bot serve` killed mid-rollback and restarted,
`python -m bot sandbox --script`, and a broken app.yaml."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from bot.config import load_config
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import seed
from bot.sandbox.slack_payloads import signed_headers, slash_command

REPO = Path(__file__).resolve().parents[1]
SECRET = "test-signing-secret"
TOKEN = "xoxb-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class BotProcess:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._healthy, what="bot to start")

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
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Emulator, BotProcess]]:
    config_data = yaml.safe_load((REPO / "app.yaml").read_text())
    config_data["rollback"]["health_check_interval_s"] = 0
    config_path = tmp_path / "app.yaml"
    config_path.write_text(yaml.safe_dump(config_data))
    emulator = Emulator(slack_token=TOKEN).start()
    seed(emulator, load_config(config_path))
    port = free_port()
    env = {
        **os.environ,
        **emulator.env(),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'runback.db'}",
        "RUNBACK_CONFIG": str(config_path),
        "RUNBACK_LEASE_S": "1",
    }
    bot = BotProcess(env, port)
    try:
        yield emulator, bot
    finally:
        bot.stop()
        emulator.stop()


def send_command(
    emulator: Emulator, port: int, command: str, text: str, user: str = "U0ANA"
) -> None:
    url = emulator.slack.new_response_url("C0INCIDENTS", user)
    body = slash_command(command, text, user, user.lower(), "C0INCIDENTS", "incidents", url)
    response = requests.post(
        f"http://127.0.0.1:{port}/slack/events",
        data=body.encode(),
        headers=signed_headers(SECRET, body),
        timeout=5,
    )
    assert response.status_code == 200


def send_rollback(emulator: Emulator, port: int) -> None:
    send_command(emulator, port, "/rollback", "wa-backend")


def card_text(emulator: Emulator) -> str:
    cards = [m for m in emulator.slack.messages("C0INCIDENTS") if not m.get("ephemeral_to")]
    return cards[0]["text"] if cards else ""


def test_bot_killed_mid_rollback_finishes_it_after_restart(world) -> None:
    emulator, bot = world
    emulator.cloudrun.operation_delay_s = 3.0  # the traffic update takes a while to apply
    bot.start()
    send_rollback(emulator, bot.port)
    wait_until(lambda: emulator.router.calls.list("run.services.patch"), what="the PATCH")
    # the card says "shifting" only after the operation name is committed (told off-thread)
    wait_until(lambda: "shifting" in card_text(emulator), what="the card to show the shift")
    bot.kill()

    bot.start()
    wait_until(lambda: "done" in card_text(emulator), timeout_s=30, what="the rollback to finish")
    assert len(emulator.router.calls.list("run.services.patch")) == 1, "nothing applied twice"
    assert emulator.cloudrun.traffic("wa-backend")[0] == {
        "revision": "wa-backend-00002",
        "percent": 100,
        "tag": "",
    }


def test_bot_killed_before_any_patch_resumes_from_the_start(world) -> None:
    emulator, bot = world
    emulator.router.faults.add(Fault("run.services.get", None, delay_ms=1500, times=2))
    bot.start()
    send_rollback(emulator, bot.port)
    wait_until(
        lambda: len(emulator.router.calls.list("run.services.get")) >= 2,
        what="the bot to be reading the service",
    )
    time.sleep(0.2)
    bot.kill()
    patches_before = len(emulator.router.calls.list("run.services.patch"))
    bot.start()
    wait_until(
        lambda: any(word in card_text(emulator) for word in ("done", "failed")),
        timeout_s=30,
        what="the rollback to end",
    )
    patches = len(emulator.router.calls.list("run.services.patch"))
    assert patches - patches_before <= 1 and "done" in card_text(emulator)


def test_release_killed_during_its_deploy_continues_without_deploying_twice(world) -> None:
    emulator, bot = world
    emulator.cloudrun.operation_delay_s = 2.0
    bot.start()
    image = "us-docker.pkg.dev/runback-sandbox/apps/wa:2.0"
    send_command(emulator, bot.port, "/deploy", f"wa-backend {image}", user="U0MARTA")
    wait_until(lambda: emulator.router.calls.list("run.services.patch"), what="the deploy")
    time.sleep(0.3)  # the operation name is committed right after the PATCH returns
    bot.kill()
    bot.start()

    def green_at_ten() -> bool:
        shares = {r["revision"]: r["percent"] for r in emulator.cloudrun.traffic("wa-backend")}
        return sorted(shares.values()) == [10, 90]

    wait_until(green_at_ten, timeout_s=30, what="the release to reach 10%")
    patches = emulator.router.calls.list("run.services.patch")
    deploys = [p for p in patches if "template" in (p.body or {})]
    assert len(deploys) == 1, "green was deployed once"
    assert len(patches) == 2, "one deploy and one shift to 10%, nothing twice"
    rows = emulator.cloudrun.traffic("wa-backend")
    assert [r["tag"] for r in rows if r["tag"]] == ["green"]


@pytest.mark.parametrize(
    ("script", "shown"),
    [
        ("demo.txt", "wa-backend-00002 100%"),
        ("release.txt", "Released"),
        ("incident.txt", "Rollback triggered"),
        ("migration-check.txt", "feature flag"),
    ],
)
def test_sandbox_example_scripts_run(script: str, shown: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "sandbox", "--script", f"examples/{script}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert shown in result.stdout


def test_sandbox_script_fails_on_a_broken_line(tmp_path: Path) -> None:
    script = tmp_path / "broken.txt"
    script.write_text("as ana\nclick Approve\n")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "sandbox", "--script", str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "broken.txt:2: no button labelled 'Approve'" in result.stdout


def test_broken_app_yaml_fails_at_start_with_the_key_path(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "app.yaml").read_text())
    del data["services"][1]["region"]
    broken = tmp_path / "app.yaml"
    broken.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(broken), "serve"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "services[1].region: field required" in result.stderr


def test_bot_killed_while_its_card_is_being_posted_does_not_post_it_twice(world) -> None:
    emulator, bot = world
    # Slack takes the post, but answers only after the bot is gone.
    emulator.router.faults.add(Fault("slack.chat.postMessage", None, delay_ms=1500, times=1))
    bot.start()
    send_rollback(emulator, bot.port)
    wait_until(lambda: emulator.router.calls.list("slack.chat.postMessage"), what="the post")
    bot.kill()
    wait_until(lambda: card_text(emulator), what="Slack to show the card the bot never saw")

    bot.start()
    wait_until(lambda: "done" in card_text(emulator), timeout_s=60, what="the card's final state")
    cards = [m for m in emulator.slack.messages("C0INCIDENTS") if not m.get("ephemeral_to")]
    assert len(cards) == 1, "one operation, one card"
    assert len(emulator.router.calls.list("slack.chat.postMessage")) == 1
    assert emulator.router.calls.list("slack.conversations.history"), "it looked before posting"
