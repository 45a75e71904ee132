"""Configuration and start-up: a broken app.yaml, an unusable DATABASE_URL or an unreachable
Slack stops `python -m bot serve` with one line that says what to fix; a database that turns
read-only later shows in /healthz, and alerts get a 503 that Cloud Monitoring retries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from bot.config import ConfigError, load_config, parse_config
from bot.database import make_engine
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import alert_payload
from bot.sandbox.slack_payloads import signed_headers
from bot.settings import Settings
from bot.store import Store
from tests.conftest import sandbox_config
from tests.db import postgres_url

REPO = Path(__file__).resolve().parents[1]
APP_YAML = (REPO / "app.yaml").read_text(encoding="utf-8")


# -- app.yaml -----------------------------------------------------------------------------------


def test_a_key_given_twice_is_an_error() -> None:
    roles_block = APP_YAML[APP_YAML.index("\nroles:") :].split("\n\n")[0]
    twice = APP_YAML + "\n" + roles_block.replace("U0", "U9") + "\n"
    with pytest.raises(ConfigError) as error:
        parse_config(twice)
    message = str(error.value)
    assert "duplicate key 'roles'" in message and "first given on line" in message


def test_a_nested_key_given_twice_is_an_error() -> None:
    twice = APP_YAML.replace("thresholds:\n", "thresholds:\n  min_requests: 7\n", 1)
    assert twice != APP_YAML
    with pytest.raises(ConfigError, match="duplicate key 'min_requests'"):
        parse_config(twice)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("thresholds", "p95_rollback_ms", ".inf"),
        ("thresholds", "observe_minutes", ".nan"),
        ("thresholds", "observe_minutes", "1e300"),
        ("thresholds", "min_requests", "1" + "0" * 40),
        ("rollback", "health_check_timeout_s", "1e12"),
        ("release", "warmup_s", ".inf"),
    ],
)
def test_infinite_and_absurd_numbers_are_refused_with_their_path(
    section: str, key: str, value: str
) -> None:
    data = yaml.safe_load(APP_YAML)
    data.setdefault(section, {})[key] = "__value__"
    text_ = yaml.safe_dump(data).replace("__value__", value)
    with pytest.raises(ConfigError) as error:
        parse_config(text_)
    assert f"{section}.{key}:" in str(error.value)


def test_a_file_that_is_not_utf8_gets_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_bytes(APP_YAML.replace("tech_lead", "t\xe9ch").encode("latin-1"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "is not UTF-8 text" in str(error.value) and "0xe9" in str(error.value)


# -- start-up of `python -m bot serve` ----------------------------------------------------------


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "secret",
        "PORT": "0",
        "HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'runback.db'}",
        "RUNBACK_CONFIG": str(REPO / "app.yaml"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("runback: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def read_only_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "ro.db"
    Store(f"sqlite:///{path}").close()
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def test_a_read_only_sqlite_file_is_one_clear_line(tmp_path: Path) -> None:
    """A file that may not be written, whoever runs the bot (root ignores mode bits, so the
    file is made immutable)."""
    path = tmp_path / "runback.db"
    Store(f"sqlite:///{path}").close()
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        line = one_clear_line(serve(tmp_path, DATABASE_URL=f"sqlite:///{path}"))
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert "DATABASE_URL" in line and "read-only" in line


@pytest.mark.parametrize(
    ("database_url", "says"),
    [
        ("sqlite:////no/such/directory/runback.db", "cannot open the SQLite file"),
        ("sqlite://", "in-memory database"),
        ("sqlite:///:memory:", "in-memory database"),
        (read_only_sqlite, "read-only"),
        ("postgresql://runback@127.0.0.1:1/runback", "Connection refused"),
        ("mysql://someone@localhost/runback", "unsupported"),
        ("not a url", "not a database URL"),
    ],
)
def test_an_unusable_database_url_is_one_clear_line(
    tmp_path: Path, database_url: object, says: str
) -> None:
    url = database_url(tmp_path) if callable(database_url) else str(database_url)
    line = one_clear_line(serve(tmp_path, DATABASE_URL=url))
    assert "DATABASE_URL" in line and says in line


@pytest.mark.postgres
def test_a_postgresql_login_refused_is_one_clear_line_without_the_password(
    tmp_path: Path,
) -> None:
    """The test server trusts every login, so an unknown role stands in for a wrong password
    (both are a FATAL line from the server at connection)."""
    base = postgres_url()
    url = base.replace("runback@", f"no_such_role_{uuid.uuid4().hex[:6]}:hunter2@", 1)
    line = one_clear_line(serve(tmp_path, DATABASE_URL=url))
    assert "DATABASE_URL" in line and "does not exist" in line and "hunter2" not in line


def test_an_unreachable_slack_is_one_clear_line(tmp_path: Path) -> None:
    emulator = Emulator().start()
    port = emulator.url.rsplit(":", 1)[1]
    emulator.stop()  # nothing listens there any more
    line = one_clear_line(serve(tmp_path, SLACK_API_URL=f"http://127.0.0.1:{port}/api/"))
    assert "cannot reach Slack" in line and "SLACK_API_URL" in line


def test_a_refused_slack_token_is_one_clear_line(tmp_path: Path) -> None:
    emulator = Emulator(slack_token="xoxb-the-right-one").start()
    try:
        line = one_clear_line(serve(tmp_path, SLACK_API_URL=emulator.env()["SLACK_API_URL"]))
    finally:
        emulator.stop()
    assert "SLACK_BOT_TOKEN" in line


# -- a database that becomes read-only while the bot runs ---------------------------------------


@pytest.fixture
def database() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database of its own (name, URL), so that it can be made read-only."""
    base = postgres_url()
    name = f"runback_ro_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    head, _, tail = base.rpartition("/")
    query = "?" + tail.split("?", 1)[1] if "?" in tail else ""
    try:
        yield name, f"{head}/{name}{query}"
    finally:
        with admin.connect() as connection:
            terminate(connection, name)
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def terminate(connection: object, name: str) -> None:
    connection.execute(  # type: ignore[attr-defined]
        text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
        {"name": name},
    )


def set_read_only(name: str, read_only: bool) -> None:
    """What a failover to a replica looks like: new sessions may only read."""
    admin = make_engine(postgres_url()).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
            connection.execute(text(f'ALTER DATABASE "{name}" {setting}'))
            terminate(connection, name)
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_a_database_that_turns_read_only_shows_in_healthz_and_alerts_get_503(
    database: tuple[str, str],
) -> None:
    name, url = database
    box = Sandbox(sandbox_config(), retry_deadline_s=1.5, database_url=url)
    try:
        health = box.bot_url.replace("/slack/events", "/healthz")
        assert box.http.get(health, timeout=5).status_code == 200
        body = alert_payload(box.emulator, "wa-backend", "open", "0.read-only")

        set_read_only(name, True)
        answer = box.http.get(health, timeout=10)
        assert answer.status_code == 503 and "refuses writes" in answer.json()["problem"]
        refused = box.post_alert(body)
        assert refused.status_code == 503, refused.text
        assert refused.headers.get("Retry-After")
        box.run_line("as ana")
        command = box.slash_body("/ops whoami")
        headers = signed_headers(box.signing_secret, command)
        slack = box.http.post(box.bot_url, data=command.encode(), headers=headers, timeout=10)
        assert slack.status_code == 503, "not a 500 and a traceback"

        set_read_only(name, False)  # Cloud Monitoring retries; this time it goes through
        assert box.http.get(health, timeout=10).status_code == 200
        accepted = box.post_alert(body)
        assert accepted.status_code == 200 and accepted.json()["status"] == "created"
        assert json.loads(accepted.text)["incident"]
    finally:
        box.close()


def test_the_warm_up_is_on_unless_the_environment_turns_it_off() -> None:
    """`RUNBACK_WARM_UP=off` (docs/configuration.md): `serve` builds Google's clients and
    compiles the templates when first needed, not 2 s after start."""
    assert Settings.from_env({}).warm_up is True
    for off in ("off", "0", "false", "NO"):
        assert Settings.from_env({"RUNBACK_WARM_UP": off}).warm_up is False
    assert Settings.from_env({"RUNBACK_WARM_UP": "on"}).warm_up is True
