"""``/ops migration-check`` end to end: signed Slack requests into the real Bolt app, the real
slack_sdk WebClient against the Slack emulator (views.open with a trigger_id that expires,
a signed view_submission, chat.postEphemeral)."""

from __future__ import annotations

import json
import time

from bot.sandbox.console import Sandbox
from bot.sandbox.slack_payloads import (
    input_values,
    signed_headers,
    slash_command,
    view_submission,
)
from tests.helpers import wait_until

INCIDENTS = "C0INCIDENTS"


def open_form(box: Sandbox, user: str = "marta") -> dict:
    box.run_line(f"as {user}")
    before = len(box.emulator.slack.views())
    box.run_line("/ops migration-check")
    views = box.emulator.slack.views()
    assert len(views) == before + 1, "views.open was not called"
    return views[-1]


def submit(box: Sandbox, record: dict, sql: str, dialect: str = "postgres", user: str = "marta"):
    user_id = box.users[user]
    view = {**record["view"], "id": record["id"], "hash": record["hash"]}
    values = input_values(view, {"sql": sql, "dialect": dialect})
    trigger = box.emulator.slack.issue_trigger_id(user_id)
    response = box.post(view_submission(view, values, user_id, user, trigger))
    box.runtime.engine.wait_idle(timeout_s=60)
    return response


def ephemerals_to(box: Sandbox, user: str) -> list[dict]:
    return [m for m in box.emulator.slack.messages() if m.get("ephemeral_to") == box.users[user]]


def test_the_command_opens_the_modal_with_the_channel_in_private_metadata(
    sandbox: Sandbox,
) -> None:
    record = open_form(sandbox)
    view = record["view"]
    assert record["user"] == sandbox.users["marta"]
    assert view["type"] == "modal" and view["callback_id"] == "migration_check"
    assert json.loads(view["private_metadata"]) == {"channel": INCIDENTS}
    sql_input = next(b for b in view["blocks"] if b.get("block_id") == "sql")
    assert sql_input["element"]["type"] == "plain_text_input"
    assert sql_input["element"]["multiline"] is True
    [call] = sandbox.emulator.router.calls.list("slack.views.open")
    assert call.body["trigger_id"]  # type: ignore[attr-defined]


def test_a_submission_gets_the_report_only_to_the_user_in_the_channel(sandbox: Sandbox) -> None:
    record = open_form(sandbox)
    sql = (
        "-- release 1.3\n"
        "ALTER TABLE reservas ADD COLUMN notes VARCHAR(500);\n"
        "CREATE INDEX idx_reservas_date ON reservas(fecha);\n"
        "ALTER TABLE reservas RENAME COLUMN fecha TO day;\n"
    )
    response = submit(sandbox, record, sql)
    assert response.status_code == 200 and not response.content  # the ack closes the modal
    [message] = ephemerals_to(sandbox, "marta")
    assert message["channel"] == INCIDENTS
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "Destructive" in text
    assert "*Line 2*" in text and "*Line 3*" in text and "*Line 4*" in text
    assert "rename_column" in text and "`fecha`" in text and "`day`" in text
    assert "CONCURRENTLY" in text  # the lock hazard, beside an additive verdict
    assert "feature flag" in text and "backup" in text  # the runbook's remedy
    assert not [m for m in sandbox.emulator.slack.messages() if not m.get("ephemeral_to")]


def test_an_additive_migration_in_mysql(sandbox: Sandbox) -> None:
    record = open_form(sandbox)
    submit(
        sandbox, record, "ALTER TABLE t ADD COLUMN c INT NULL;\nCREATE INDEX i ON t (c);", "mysql"
    )
    [message] = ephemerals_to(sandbox, "marta")
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "MySQL" in text and "Additive" in text and "Runbook" not in text


def test_user_text_is_escaped_and_a_long_migration_stays_within_slacks_limits(
    sandbox: Sandbox,
) -> None:
    record = open_form(sandbox)
    sql = "UPDATE t SET note = '<!channel>';\n"
    sql += "".join(f"ALTER TABLE t ADD COLUMN c{i} int;\n" for i in range(60))
    submit(sandbox, record, sql)
    [message] = ephemerals_to(sandbox, "marta")  # the emulator rejects what Slack rejects
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "update_without_where" in text  # the destructive one is shown first
    assert "41 more" in text
    assert len(message["blocks"]) <= 50


def test_an_expired_trigger_id_gets_a_clear_note_and_no_modal(sandbox: Sandbox) -> None:
    user_id, channel = sandbox.users["marta"], INCIDENTS
    url = sandbox.emulator.slack.new_response_url(channel, user_id)
    stale = sandbox.emulator.slack.issue_trigger_id(user_id, issued_at=time.time() - 3.5)
    body = slash_command(
        "/ops", "migration-check", user_id, "marta", channel, "incidents", url, stale
    )
    assert sandbox.post(body).status_code == 200
    sandbox.runtime.engine.wait_idle(timeout_s=60)
    assert sandbox.emulator.slack.views() == []
    [note] = ephemerals_to(sandbox, "marta")
    assert "/ops migration-check" in note["text"] and "3 s" in note["text"]


def test_a_forged_submission_is_refused(sandbox: Sandbox) -> None:
    record = open_form(sandbox)
    user_id = sandbox.users["marta"]
    view = {**record["view"], "id": record["id"]}
    body = view_submission(view, input_values(view, {"sql": "DROP TABLE t;"}), user_id, "m", "x")
    headers = signed_headers("not-the-secret", body)
    response = sandbox.http.post(sandbox.bot_url, data=body.encode(), headers=headers, timeout=10)
    assert response.status_code == 401
    sandbox.runtime.engine.wait_idle(timeout_s=60)
    assert ephemerals_to(sandbox, "marta") == []


def test_the_modal_opens_in_time_while_slack_is_slow_to_take_answers(sandbox: Sandbox) -> None:
    """Answers to earlier commands that Slack holds (their response_url hangs) must not keep a
    modal from opening within its trigger_id's 3 s."""
    control = f"{sandbox.emulator.url}/_emulator"
    held = {"api": "slack.response_url", "delay_ms": 6_000, "times": None}
    sandbox.http.post(f"{control}/faults", json=held, timeout=5).raise_for_status()

    def answers_held() -> int:
        query = {"api": "slack.response_url"}
        return len(sandbox.http.get(f"{control}/requests", params=query, timeout=5).json())

    try:
        for _ in range(3):  # more than the answers' lane has threads
            assert sandbox.post(sandbox.slash_body("/traffic wa-backend")).status_code == 200
        wait_until(lambda: answers_held() >= 2, "answers held", 10)
        assert sandbox.post(sandbox.slash_body("/ops migration-check")).status_code == 200
        wait_until(lambda: len(sandbox.emulator.slack.views()) == 1, "the modal opened", 3)
    finally:
        sandbox.http.delete(f"{control}/faults", timeout=5)
