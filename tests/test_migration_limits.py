"""No input crashes the migration check, and migration SQL has one limit everywhere (issue #22):
MySQL nested hundreds of parentheses deep gets a verdict (``unknown``) from the policy, the CLI,
``POST /ci/releases``, the ``/deploy … --migration`` form and ``/ops migration-check``; SQL over
``MAX_SQL_CHARS`` is refused by each of them, clearly (beside the field in a form)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.policy.migrations import MAX_SQL_CHARS, Verdict, check_migration
from bot.sandbox.console import Sandbox
from tests.test_check_migration_cli import check
from tests.test_migration_modal import ephemerals_to, open_form, submit
from tests.test_release_migrations import COMMIT, FLAG, IMAGE, SERVICE, ci, latest, submit_form


def nested(depth: int) -> str:
    return "ALTER TABLE t ADD COLUMN c INT DEFAULT " + "(" * depth + "1" + ")" * depth + ";"


TOO_LONG = "-- " + "x" * MAX_SQL_CHARS + "\nALTER TABLE t ADD COLUMN c INT;"


@pytest.mark.parametrize("depth", [40, 200, 20_000])
def test_deeply_nested_mysql_is_unknown_never_a_recursion_error(depth: int) -> None:
    [finding] = check_migration(nested(depth), "mysql")
    assert finding.verdict == Verdict.UNKNOWN and finding.rule == "too_nested"


def test_a_check_made_deep_in_a_call_stack_still_gets_a_verdict() -> None:
    """The nesting Runback can read depends on how deep the caller already is: whatever the
    parser's recursion still trips over is unknown too."""

    def at_depth(left: int, work: Callable[[], Any]) -> Any:
        return work() if left <= 0 else at_depth(left - 1, work)

    spare = 120  # frames left to the check
    findings = at_depth(
        sys.getrecursionlimit() - spare, lambda: check_migration(nested(15), "mysql")
    )
    assert [f.verdict for f in findings] == [Verdict.UNKNOWN]


def test_the_cli_gives_nested_mysql_a_verdict_and_refuses_oversized_sql(tmp_path: Path) -> None:
    result = check("--dialect", "mysql", "-", stdin=nested(200))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "too_nested" in result.stdout
    big = tmp_path / "big.sql"
    big.write_text(TOO_LONG)
    result = check("--dialect", "mysql", str(big))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{MAX_SQL_CHARS:,}" in result.stdout, result.stdout


def test_ci_gives_nested_mysql_a_verdict_and_refuses_oversized_sql(sandbox: Sandbox) -> None:
    payload = {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "dialect": "mysql"}
    answer = ci(sandbox, {**payload, "migration_sql": nested(200)})
    assert answer.status_code == 201, answer.text
    assert answer.json()["verdict"] == "unknown"
    answer = ci(sandbox, {**payload, "migration_sql": TOO_LONG})
    assert answer.status_code in (400, 413), answer.text
    assert str(MAX_SQL_CHARS) in answer.text


def test_the_deploy_form_gives_nested_mysql_a_verdict_and_refuses_oversized_sql(
    sandbox: Sandbox,
) -> None:
    sandbox.run_line("as marta")
    sandbox.run_line(f"/deploy {SERVICE} {IMAGE} --migration")
    refused = submit_form(sandbox, TOO_LONG, flag=FLAG)
    assert refused.status_code == 200
    assert refused.json()["response_action"] == "errors"
    assert f"{MAX_SQL_CHARS:,}" in refused.json()["errors"]["sql"], "beside the field"
    assert latest(sandbox, "release") is None

    answer = submit_mysql(sandbox, nested(200), flag=FLAG)
    assert answer.status_code == 200 and answer.content == b"", answer.text
    release = latest(sandbox, "release")
    assert release is not None and release.data["migration"]["verdict"] == "unknown"
    assert release.state == "backing_up", "unknown is never a pass"


def submit_mysql(box: Sandbox, sql: str, flag: str) -> Any:
    """The newest /deploy --migration form, sent with MySQL picked."""
    from bot.sandbox.slack_payloads import input_values, view_submission

    user_id = box.users["marta"]
    record = [v for v in box.emulator.slack.views() if v["user"] == user_id][-1]
    view = {**record["view"], "id": record["id"], "hash": record["hash"]}
    values = input_values(view, {"sql": sql, "flag": flag, "dialect": "mysql"})
    trigger = box.emulator.slack.issue_trigger_id(user_id)
    response = box.post(view_submission(view, values, user_id, "marta", trigger))
    box.runtime.engine.wait_idle(timeout_s=60)
    return response


def test_migration_check_gives_nested_mysql_a_verdict_and_refuses_oversized_sql(
    sandbox: Sandbox,
) -> None:
    record = open_form(sandbox)
    refused = submit(sandbox, record, TOO_LONG)
    assert refused.json()["response_action"] == "errors"
    assert f"{MAX_SQL_CHARS:,}" in refused.json()["errors"]["sql"]
    assert ephemerals_to(sandbox, "marta") == []

    record = open_form(sandbox)
    submit(sandbox, record, nested(200), dialect="mysql")
    [report] = ephemerals_to(sandbox, "marta")
    text = json.dumps(report, ensure_ascii=False)
    assert "Something went wrong" not in text and "too_nested" in text
