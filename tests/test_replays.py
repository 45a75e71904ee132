"""A replayed signed Slack request never acts twice within Slack's 5-minute window: while the
process lives, and after `kill -9` and a restart, on SQLite and on PostgreSQL (issue #22).

Each case runs `python -m bot serve` as users run it, against the emulators."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from bot.sandbox.emulator.server import Emulator
from bot.sandbox.slack_payloads import signed_headers, slash_command
from bot.store import Operation
from bot.web import changes_state
from tests.db import BACKENDS, empty_database
from tests.helpers import SECRET, BotProcess, bot_config, bot_on_emulators, wait_until

SERVICE = "wa-backend"
CHANNEL = "C0INCIDENTS"


@pytest.fixture(params=BACKENDS)
def bot_world(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Emulator, BotProcess]]:
    """One `python -m bot serve` on the emulators, on SQLite or on a PostgreSQL schema."""
    config_path = bot_config(tmp_path)
    with (
        empty_database(request.param, tmp_path) as database_url,
        bot_on_emulators(
            BotProcess, tmp_path, database_url, config_path, RUNBACK_LEASE_S="1"
        ) as world,
    ):
        yield world


def signed_command(emulator: Emulator, command: str, text: str, user: str = "U0ANA"):
    url = emulator.slack.new_response_url(CHANNEL, user)
    body = slash_command(command, text, user, user.lower(), CHANNEL, "incidents", url)
    return body.encode(), signed_headers(SECRET, body)


def post(port: int, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers, timeout=10
    )


def serving(emulator: Emulator) -> dict[str, int]:
    rows = emulator.cloudrun.traffic(SERVICE)
    return {r["revision"]: r["percent"] for r in rows if r["percent"]}


def rollbacks(bot: BotProcess) -> int:
    with bot.store.session() as session:
        query = select(func.count()).select_from(Operation).where(Operation.kind == "rollback")
        return int(session.scalar(query) or 0)


def settled(bot: BotProcess, count: int) -> bool:
    with bot.store.session() as session:
        states = list(session.scalars(select(Operation.state).where(Operation.kind == "rollback")))
    return len(states) == count and all(s in ("succeeded", "failed") for s in states)


def test_a_replayed_rollback_never_acts_again_even_after_kill_9_and_restart(bot_world) -> None:
    emulator, bot = bot_world
    bot.start()
    before = serving(emulator)
    [blue] = before
    captured, headers = signed_command(
        emulator, "/rollback", f"{SERVICE} wa-backend-00001 captured request"
    )
    assert post(bot.port, captured, headers).status_code == 200
    wait_until(lambda: settled(bot, 1), timeout_s=60, what="the first rollback")
    assert serving(emulator) == {"wa-backend-00001": 100}
    back, back_headers = signed_command(emulator, "/rollback", f"{SERVICE} {blue} moving back")
    assert post(bot.port, back, back_headers).status_code == 200
    wait_until(lambda: settled(bot, 2), timeout_s=60, what="the rollback back by name")
    assert serving(emulator) == before
    patches = len(emulator.router.calls.list("run.services.patch"))

    replay = post(bot.port, captured, headers)  # the same bytes, while the process lives
    assert replay.status_code == 200 and replay.content == b""
    bot.kill()
    bot.start()
    assert int(headers["X-Slack-Request-Timestamp"]) > time.time() - 300, "within the window"
    again = post(bot.port, captured, headers)  # and after kill -9 and a restart
    assert again.status_code == 200 and again.content == b""

    # Refused, the replay is logged before its answer; acted on, it records a new operation.
    wait_until(
        lambda: rollbacks(bot) > 2 or "replayed" in bot.log.read_text(errors="replace"),
        timeout_s=30,
        what="the replay to be refused or acted on",
    )
    assert rollbacks(bot) == 2, "no new operation from a replay"
    assert serving(emulator) == before
    assert len(emulator.router.calls.list("run.services.patch")) == patches


@pytest.mark.parametrize(
    ("body", "changes"),
    [
        ("command=%2Frollback&text=wa-backend", True),
        ("command=%2Fdeploy&text=wa-backend+img", True),
        ("command=%2Fflag&text=wa-backend+NEW_CHECKOUT+on", True),
        ("command=%2Fops&text=backup+wa-backend", True),
        ("command=%2Fops&text=drill", True),
        ("command=%2Fops&text=procedure", True),
        ("command=%2Fops&text=restore+wa-backend+123", True),
        ("command=%2Fnew-command&text=", True),
        ("payload=%7B%22type%22%3A%22block_actions%22%7D", True),
        ("payload=%7B%22type%22%3A%22view_submission%22%7D", True),
        ("command=%2Ftraffic&text=wa-backend", False),
        ("command=%2Fflag&text=wa-backend", False),
        ("command=%2Fops&text=", False),
        ("command=%2Fops&text=WHOAMI", False),
        ("command=%2Fops&text=check+wa-backend", False),
    ],
)
def test_only_reads_are_left_out_of_the_durable_replay_keys(body: str, changes: bool) -> None:
    environ = {"CONTENT_TYPE": "application/x-www-form-urlencoded"}
    assert changes_state(environ, body) is changes
