"""`python -m bot serve` as a Cloud Run instance with request-based billing runs it: the CPU only
while a request is in flight. The process is stopped (SIGSTOP) whenever no request is open and
continued (SIGCONT) around each one; only Cloud Scheduler's `POST /tasks/tick` carries a release
step and a flag watch forward, and the instance says at start that its CPU is throttled."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from sqlalchemy import select

from bot.config import load_config
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import RUNBACK_REVISION, RUNBACK_SERVICE, seed_runback
from bot.store import Operation
from tests.helpers import BotProcess, bot_config, bot_on_emulators, send_command

T = TypeVar("T")
TICK_TOKEN = "tick-token-for-the-throttled-instance"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v2.0.0"
WARNING = "allocates CPU only during requests"
TICKS = 6


class ThrottledInstance(BotProcess):
    """The bot with Cloud Run's request-based CPU: stopped unless a request is in flight."""

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def request(self, send: Callable[[], T]) -> T:
        """One request with the CPU given for exactly its duration, as Cloud Run does."""
        self.thaw()
        try:
            return send()
        finally:
            self.freeze()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
        super().stop()

    def tick(self) -> requests.Response:
        return self.request(
            lambda: requests.post(
                f"http://127.0.0.1:{self.port}/tasks/tick",
                headers={"Authorization": f"Bearer {TICK_TOKEN}"},
                timeout=90,
            )
        )

    def operations(self) -> dict[str, Operation]:
        with self.store.session() as session:
            found = session.scalars(select(Operation).order_by(Operation.created_at))
            return {operation.kind: operation for operation in found}


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[tuple[Emulator, ThrottledInstance]]:
    config_path = bot_config(tmp_path, release={"warmup_s": 1, "judge_interval_s": 1})
    config = load_config(config_path)
    with bot_on_emulators(
        ThrottledInstance,
        tmp_path,
        f"sqlite:///{tmp_path / 'runback.db'}",
        config_path,
        RUNBACK_TICK_TOKEN=TICK_TOKEN,
        RUNBACK_TICK_DEADLINE_S="30",
        GOOGLE_CLOUD_PROJECT=config.services[0].project,
        # what Cloud Run sets in every instance
        K_SERVICE=RUNBACK_SERVICE,
        K_REVISION=RUNBACK_REVISION,
    ) as (emulator, bot):
        seed_runback(emulator, config, cpu_idle=True)  # deployed with request-based billing
        yield emulator, bot


def progressed(operation: Operation | None, state: str) -> bool:
    """In ``state`` and judged at least once: numbers recorded, or Monitoring's next minute
    awaited (no minute is visible a second after the step started: issue 17)."""
    judged = operation and (operation.data.get("judgements") or operation.data.get("waiting"))
    return bool(operation and operation.state == state and judged)


def test_ticks_alone_carry_a_release_and_a_flag_watch_on_a_throttled_instance(
    instance: tuple[Emulator, ThrottledInstance],
) -> None:
    emulator, bot = instance
    bot.start()  # the request that starts an instance has the CPU while it loads
    warnings = [line for line in bot.log_tail(20_000).splitlines() if WARNING in line]
    assert len(warnings) == 1, bot.log_tail()
    assert (
        "gcloud run services update runback --region us-central1 --no-cpu-throttling"
        in (warnings[0])
    )
    bot.freeze()

    deploy = f"wa-backend {IMAGE}"
    bot.request(lambda: send_command(emulator, bot.port, "/deploy", deploy, "U0MARTA"))
    bot.request(
        lambda: send_command(
            emulator, bot.port, "/flag", "wa-backend-staging BETA_SEARCH off", "U0PABLO"
        )
    )
    # Cloud Scheduler's ticks, each after the steps' due times (warm-up and judge interval 1 s
    # here; a minute apart in production). Each tick must do what is due within its request:
    # a handful of ticks, not the dozens that the moments after each answer would add up to.
    seen: dict[str, Any] = {}
    for _ in range(TICKS):
        time.sleep(1.2)  # no CPU meanwhile: the process is stopped
        answer = bot.tick()
        assert answer.status_code == 200 and answer.json() == {"status": "ticked"}, answer.text
        operations = bot.operations()
        seen = {k: (op.state, op.data.get("waiting")) for k, op in operations.items()}
        if progressed(operations.get("release"), "judging") and progressed(
            operations.get("flag"), "watching"
        ):
            break
    else:
        raise AssertionError(f"{TICKS} ticks did not carry the work on: {seen}\n{bot.log_tail()}")

    shares = {r["revision"]: r["percent"] for r in emulator.cloudrun.traffic("wa-backend")}
    assert sorted(shares.values()) == [10, 90], "the release reached its first canary step"
    staging = emulator.cloudrun.traffic("wa-backend-staging")
    flipped = [row["revision"] for row in staging if row["percent"] == 100]
    assert emulator.cloudrun.revision_flags(flipped[0])["BETA_SEARCH"] == "false"
