"""A restore in `python -m bot serve`, killed with SIGKILL while Cloud SQL restores the backup
into the clone, and started again: on SQLite and on PostgreSQL the new process follows the same
Cloud SQL operation and goes on (issue 21: on PostgreSQL it ended "failed")."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from sqlalchemy import text

from bot.config import load_config
from bot.database import make_engine
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import seed
from bot.sandbox.slack_payloads import find_button
from tests.db import postgres_url
from tests.helpers import REPO, SECRET, TOKEN, BotProcess, free_port, send_command, wait_until
from tests.test_processes import click

NEWEST = "1700000000003"  # wa-backend-db's newest automated backup in the sandbox


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Emulator, BotProcess]]:
    config_data = yaml.safe_load((REPO / "app.yaml").read_text())
    config_data["rollback"]["health_check_interval_s"] = 0
    config_data.setdefault("readiness", {})["block_production"] = False
    config_data["backups"]["poll_interval_s"] = 0.5
    config_path = tmp_path / "app.yaml"
    config_path.write_text(yaml.safe_dump(config_data))
    schema = ""
    if request.param == "postgresql":
        url = postgres_url()
        schema = f"runback_kill_{uuid.uuid4().hex[:12]}"
        admin = make_engine(url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in url else "?"
        database_url = f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    else:
        database_url = f"sqlite:///{tmp_path / 'runback.db'}"
    emulator = Emulator(slack_token=TOKEN).start()
    seed(emulator, load_config(config_path))
    emulator.sqladmin.set_durations(CREATE=2, RESTORE_VOLUME=6)
    port = free_port()
    env = {
        **os.environ,
        **emulator.env(),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": database_url,
        "RUNBACK_CONFIG": str(config_path),
        "RUNBACK_LEASE_S": "1",
    }
    bot = BotProcess(env, port, tmp_path)
    try:
        yield emulator, bot
    finally:
        bot.stop()
        emulator.stop()
        if schema:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def ask_and_approve(emulator: Emulator, bot: BotProcess) -> None:
    send_command(emulator, bot.port, "/ops", f"restore wa-backend {NEWEST}", user="U0LUIS")
    messages = lambda: emulator.slack.messages("C0INCIDENTS")  # noqa: E731
    wait_until(lambda: find_button(messages(), "Ask to restore"), what="the confirmation")
    click(emulator, bot.port, "Ask to restore", "U0LUIS")
    wait_until(lambda: find_button(messages(), "Approve"), what="the restore's card")
    click(emulator, bot.port, "Approve", "U0SOFIA")


def assert_it_went_on(emulator: Emulator, bot: BotProcess) -> None:
    def deployed() -> bool:
        operation = bot.last_operation()
        return bool(operation and operation.state in ("judging", "succeeded", "failed"))

    try:
        wait_until(deployed, timeout_s=90, what="the restore to move traffic")
    except AssertionError:
        operation = bot.last_operation()
        state = (operation.state, operation.data) if operation else None
        raise AssertionError(f"{state}\n{bot.log_tail()}") from None
    operation = bot.last_operation()
    assert operation is not None
    assert operation.state != "failed", (operation.data.get("outcome"), bot.log_tail())
    assert len(emulator.router.calls.list("sql.instances.insert")) == 1


def test_a_restore_killed_while_restoring_resumes_after_restart(world) -> None:
    emulator, bot = world
    bot.start()
    ask_and_approve(emulator, bot)

    def restoring() -> bool:
        operation = bot.last_operation()
        return bool(operation and operation.state == "restoring" and operation.data.get("sql_op"))

    wait_until(restoring, timeout_s=60, what="the restore's Cloud SQL operation in the store")
    bot.kill()
    bot.start()
    assert_it_went_on(emulator, bot)
    assert len(emulator.router.calls.list("sql.instances.restoreBackup")) == 1


def test_a_restore_killed_before_it_heard_cloud_sqls_answer_resumes(world) -> None:
    """Cloud SQL started the restore but the bot died before the answer came (and before it
    could store the operation's name): the restarted bot must find that operation and follow
    it, not ask again (Cloud SQL answers 409: another operation is in progress) and fail."""
    emulator, bot = world
    late = Fault("sql.instances.restoreBackup", None, delay_ms=8000, times=1, after=True)
    emulator.router.faults.add(late)
    emulator.sqladmin.set_durations(RESTORE_VOLUME=15)  # still running when the bot is back
    bot.start()
    ask_and_approve(emulator, bot)
    wait_until(
        lambda: emulator.router.calls.list("sql.instances.restoreBackup"),
        timeout_s=60,
        what="the restoreBackup call",
    )
    bot.kill()
    operation = bot.last_operation()
    assert operation is not None and operation.state == "restoring"
    assert not operation.data.get("sql_op"), "killed before the answer"
    bot.start()
    assert_it_went_on(emulator, bot)
    assert len(emulator.router.calls.list("sql.instances.restoreBackup")) == 1
