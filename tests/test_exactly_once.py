"""Twenty on-call engineers press `/rollback SERVICE` at once, against `python -m bot serve` on
SQLite (one instance) and on PostgreSQL (two instances): traffic moves once, one revision back,
whatever happens to the answers. An answer Slack does not take (its response_url refuses the
connection, answers 500, or never answers) must never change what a command does: it used to
delay the commands queued behind it until the first rollback had ended, and one of them then
rolled back a second time (issue 23).

Each round runs on a service of its own (the same processes, a fresh service), so one test
repeats the race several times: it showed in about half the runs."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_config
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import seed
from bot.sandbox.slack_payloads import slash_command
from bot.store import Store
from tests.db import postgres_schema
from tests.helpers import REPO, TOKEN, BotProcess, bot_config, free_port, serve_env, wait_until
from tests.test_instances import CHANNEL, Instance, concurrently, post_signed

ON_CALL = "U0ANA"
ROUNDS = ("refused", "error", "hang", "refused", "error", "refused")  # how answers fail
REQUESTS = 20


class _Hangs:
    """An HTTP endpoint that takes the connection and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        for connection in self._held:
            connection.close()


def _refusing_port() -> int:
    """A port nothing listens on: a connection to it is refused."""
    with closing(socket.create_server(("127.0.0.1", 0))) as probe:
        return probe.getsockname()[1]


@dataclass
class World:
    emulator: Emulator
    bots: list[BotProcess]
    store: Store
    hangs: _Hangs

    def response_url(self, mode: str) -> str:
        key = uuid.uuid4().hex
        if mode == "refused":
            return f"http://127.0.0.1:{_refusing_port()}/commands/{key}"
        if mode == "hang":
            return f"http://127.0.0.1:{self.hangs.port}/commands/{key}"
        return self.emulator.slack.new_response_url(CHANNEL, ON_CALL)  # answers 500 (a fault)

    def patches(self, service: str) -> list[Any]:
        calls = self.emulator.router.calls.list("run.services.patch")
        return [c for c in calls if c.path.endswith(f"/services/{service}")]

    def serving(self, service: str) -> dict[str, int]:
        traffic = self.emulator.cloudrun.traffic(service)
        return {t["revision"]: t["percent"] for t in traffic if t["percent"]}

    def decided(self, service: str) -> int:
        """Commands that reached a decision: refused (busy), asked (a repeat), or run."""
        counted = {"rollback.refused", "rollback.confirmation_requested", "rollback.approved"}
        return sum(
            1
            for record in self.store.journal.audit(limit=10_000)
            if record.action in counted and record.service == service
        )

    def story(self, service: str) -> list[Any]:
        """What the database says happened on ``service`` (for a failure's message)."""
        records = [
            (r.action, r.outcome, r.operation_id, r.detail.get("why", ""))
            for r in self.store.journal.audit(limit=10_000)
            if r.service == service and r.action != "rollback.refused"
        ]
        return [self.serving(service), records]

    def logs(self) -> str:
        return "\n".join(f"--- :{bot.port}\n{bot.log_tail()}" for bot in self.bots)


def _config(tmp_path: Path) -> Path:
    services = yaml.safe_load((REPO / "app.yaml").read_text())["services"]
    template = next(s for s in services if s["name"] == "wa-backend")
    for index in range(len(ROUNDS)):
        service = {k: v for k, v in template.items() if k != "database"}
        services.append({**service, "name": f"wa-round{index}"})
    return bot_config(tmp_path, services=services)


@contextmanager
def _world(tmp_path: Path, database_url: str, instances: int) -> Iterator[World]:
    config_path = _config(tmp_path)
    emulator = Emulator(slack_token=TOKEN).start()
    seed(emulator, load_config(config_path))
    emulator.cloudrun.operation_delay_s = 1.0  # the winner holds the service a while
    store = Store(database_url)  # the tables exist before the instances start
    bots: list[BotProcess] = []
    for index in range(instances):
        port = free_port()
        log_dir = tmp_path / f"bot{index}"
        log_dir.mkdir()
        env = serve_env(emulator, port, database_url, config_path)
        bots.append(Instance(env, port, log_dir))
    built = World(emulator, bots, store, _Hangs())
    try:
        for bot in built.bots:
            bot.start()
        yield built
    finally:
        for bot in built.bots:
            bot.stop()
        built.hangs.close()
        built.emulator.stop()
        built.store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "sqlite":
        with _world(tmp_path, f"sqlite:///{tmp_path / 'runback.db'}", instances=1) as built:
            yield built
    else:
        with (
            postgres_schema("runback_once") as database_url,
            _world(tmp_path, database_url, instances=2) as built,
        ):
            yield built


def _fire(world: World, service: str, mode: str) -> None:
    def send(index: int) -> None:
        url = world.response_url(mode)
        body = slash_command(
            "/rollback", f"{service} reason {index}", ON_CALL, "ana", CHANNEL, "incidents", url
        )
        port = world.bots[index % len(world.bots)].port
        assert post_signed(port, body).status_code == 200

    concurrently([lambda index=index: send(index) for index in range(REQUESTS)])


def test_twenty_concurrent_rollbacks_move_traffic_once_whatever_the_answers(world: World) -> None:
    for index, mode in enumerate(ROUNDS):
        service = f"wa-round{index}"
        world.emulator.router.faults.clear()
        if mode == "error":
            world.emulator.router.faults.add(Fault("slack.response_url", 500, times=None))
        _fire(world, service, mode)
        try:
            wait_until(
                lambda service=service: world.decided(service) >= REQUESTS,
                timeout_s=60,
                what=f"all {REQUESTS} commands of round {index} ({mode}) to be decided",
            )
            wait_until(
                lambda service=service: world.serving(service) == {f"{service}-00002": 100},
                timeout_s=30,
                what=f"round {index}: traffic on {service}-00002",
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{world.logs()}") from None
        assert len(world.patches(service)) == 1, (mode, world.story(service))
        assert world.serving(service) == {f"{service}-00002": 100}, mode
