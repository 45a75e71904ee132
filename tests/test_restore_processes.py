"""A restore in `python -m bot serve`, killed with SIGKILL while Cloud SQL restores the backup
into the clone, and started again: on SQLite and on PostgreSQL the new process follows the same
Cloud SQL operation and goes on (issue 21: on PostgreSQL it ended "failed")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.ops.restore.states import RestoreData
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.slack_payloads import find_button
from tests.db import empty_database
from tests.helpers import BotProcess, bot_config, bot_on_emulators, send_command, wait_until
from tests.test_processes import click

NEWEST = "1700000000003"  # wa-backend-db's newest automated backup in the sandbox


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Emulator, BotProcess]]:
    config_path = bot_config(tmp_path, backups={"poll_interval_s": 0.5})
    with (
        empty_database(request.param, tmp_path) as database_url,
        bot_on_emulators(BotProcess, tmp_path, database_url, config_path, RUNBACK_LEASE_S="1") as (
            emulator,
            bot,
        ),
    ):
        emulator.sqladmin.set_durations(CREATE=2, RESTORE_VOLUME=6)
        yield emulator, bot


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
    assert operation.state != "failed", (RestoreData.of(operation).outcome, bot.log_tail())
    assert len(emulator.router.calls.list("sql.instances.insert")) == 1


def test_a_restore_killed_while_restoring_resumes_after_restart(world) -> None:
    emulator, bot = world
    bot.start()
    ask_and_approve(emulator, bot)

    def restoring() -> bool:
        operation = bot.last_operation()
        return bool(
            operation and operation.state == "restoring" and RestoreData.of(operation).sql_op
        )

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
    assert not RestoreData.of(operation).sql_op, "killed before the answer"
    bot.start()
    assert_it_went_on(emulator, bot)
    assert len(emulator.router.calls.list("sql.instances.restoreBackup")) == 1
