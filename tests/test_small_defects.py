"""Small defects of issue 20, each as people meet it: the command line, `serve`, the console and
the Slack emulator's files."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bot.database import make_engine
from bot.sandbox.console import ConsoleError, Sandbox
from bot.sandbox.emulator.server import Emulator
from tests.helpers import free_port, run_lines

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8"}


def bot(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=REPO,
        env={**ENV, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("speed", ["0", "-5", "1e9", "nan"])
def test_a_speed_out_of_range_is_refused_at_once(speed: str) -> None:
    result = bot("--speed", speed, "sandbox", "--script", "/dev/null")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--speed" in result.stderr and "above 0 and at most" in result.stderr


def test_an_unsupported_database_is_one_clear_line_for_db_current() -> None:
    result = bot("db", "current", DATABASE_URL="mysql://app:secret@127.0.0.1/app")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "unsupported" in result.stderr and "postgresql://" in result.stderr


def test_heroku_style_postgres_urls_are_postgresql() -> None:
    engine = make_engine("postgres://app@127.0.0.1:1/app")
    assert engine.dialect.name == "postgresql"
    engine.dispose()


def test_sandbox_takes_config_after_its_own_name(tmp_path: Path) -> None:
    script = tmp_path / "script.txt"
    script.write_text("traffic wa-backend\n")
    result = bot("sandbox", "--config", str(REPO / "app.yaml"), "--script", str(script))
    assert result.returncode == 0, result.stderr
    assert "wa-backend-00003 100%" in result.stdout


def test_a_piped_script_with_an_unmet_expect_fails_like_a_script() -> None:
    result = bot("sandbox", stdin="traffic wa-backend\nexpect wa-backend-00099\n")
    assert result.returncode == 1, result.stdout
    assert bot("sandbox", stdin="traffic wa-backend\nexpect wa-backend-00003\n").returncode == 0


def test_engine_warnings_stamped_with_the_wall_clock_stay_out_of_the_console() -> None:
    """Monitoring failing while an alert is judged: the card says so; no log line with a wall
    clock time (the sandbox runs on its own) between the console's lines."""
    result = bot("sandbox", stdin="fault monitoring.timeSeries.list 503 50\nalert wa-backend\n")
    assert result.returncode == 0, result.stderr
    assert "Monitoring unreadable" not in result.stderr + result.stdout
    assert not re.search(r"^\d{4}-\d\d-\d\d \d\d:", result.stderr, re.MULTILINE), result.stderr


def test_the_emulators_print_the_slack_token_they_take() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "emulators", "--port", str(free_port())],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("control API" in x for x in lines):
            lines.append(process.stdout.readline())
        assert any(line.startswith("SLACK_BOT_TOKEN=xoxb-sandbox") for line in lines), lines
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sigterm_leaves_no_sandbox_folder_behind(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox"],
        cwd=REPO,
        env={**ENV, "TMPDIR": str(tmp_path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Runback sandbox" not in process.stdout.readline():
            pass
        assert list(tmp_path.glob("runback-sandbox-*")), "the sandbox made its folder"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not list(tmp_path.glob("runback-sandbox-*"))


# -- serve ----------------------------------------------------------------------------------------


def serve_env(tmp_path: Path, port: int, emulator: Emulator | None = None) -> dict[str, str]:
    return {
        **ENV,
        "SLACK_BOT_TOKEN": emulator.slack.token if emulator else "xoxb-test",
        "SLACK_SIGNING_SECRET": "secret",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'runback.db'}",
        "RUNBACK_CONFIG": str(REPO / "app.yaml"),
        **(emulator.env() if emulator else {}),
    }


def test_serve_on_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bot", "serve"],
            cwd=REPO,
            env=serve_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("runback: cannot listen on 127.0.0.1:") and "PORT" in line


def test_serve_prints_no_bolt_warning_about_client_and_token(tmp_path: Path) -> None:
    emulator = Emulator().start()
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            cwd=REPO,
            env=serve_env(tmp_path, port, emulator),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(log.read_text())
    finally:
        process.terminate()
        process.wait(timeout=20)
        emulator.stop()
    assert "will be unused" not in log.read_text(), log.read_text()


# -- the console -------------------------------------------------------------------------------


def test_the_console_clears_an_injected_fault(sandbox: Sandbox) -> None:
    run_lines(sandbox, "fault run.services.patch 503 5")
    assert run_lines(sandbox, "fault clear") == ["(no injected fault left; 1 cleared)"]
    assert sandbox.emulator.router.faults.list() == []
    run_lines(sandbox, "as ana", "/rollback wa-backend it broke")
    assert any(
        r["percent"] == 100 and r["revision"] == "wa-backend-00002"
        for r in sandbox.emulator.cloudrun.traffic("wa-backend")
    )


def test_submit_with_no_open_form_says_so(sandbox: Sandbox) -> None:
    run_lines(sandbox, "as ana", "/ops migration-check", "submit ALTER TABLE t ADD COLUMN c int;")
    with pytest.raises(ConsoleError, match="no form is open for you"):
        sandbox.run_line("submit ALTER TABLE t DROP COLUMN c;")


def test_the_console_shows_a_posted_file(sandbox: Sandbox) -> None:
    run_lines(sandbox, "set wa-backend-00003 error_rate=0.07", "wait 9m", "alert wa-backend")
    shown = run_lines(sandbox, "show postmortem")
    assert shown[0].startswith("── postmortem-wa-backend-")
    assert any(line.startswith("# Postmortem draft: wa-backend") for line in shown)
    with pytest.raises(ConsoleError, match="posted: postmortem-wa-backend-"):
        sandbox.run_line("show chart")


def test_the_time_line_names_the_date_after_a_long_wait(sandbox: Sandbox) -> None:
    (short,) = run_lines(sandbox, "wait 1m")
    assert short.startswith("(sandbox time is now ") and "-" not in short
    (long,) = run_lines(sandbox, "wait 30h")
    assert f"{sandbox.clock.now():%Y-%m-%d}" in long


# -- the Slack emulator's files -------------------------------------------------------------------


def test_url_private_is_served_to_the_bot_token_only(sandbox: Sandbox) -> None:
    run_lines(sandbox, "set wa-backend-00003 error_rate=0.07", "wait 9m", "alert wa-backend")
    (record,) = sandbox.emulator.slack.files()
    message = next(
        m for m in sandbox.emulator.slack.messages() if m.get("files")
    )  # as Slack hands the file to clients: with its url_private
    url = message["files"][0]["url_private"]
    token = sandbox.emulator.slack.token
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200 and answer.text.startswith("# Postmortem draft")
    assert requests.get(url, timeout=10).status_code == 403
    wrong = {"Authorization": "Bearer xoxb-someone-else"}
    assert requests.get(url, headers=wrong, timeout=10).status_code == 403
    missing = url.replace(record["id"], "F0000000000")
    assert requests.get(missing, headers={"Authorization": f"Bearer {token}"}).status_code == 404


def test_the_readme_observe_band_recipe_opens_a_new_incident(sandbox: Sandbox) -> None:
    run_lines(sandbox, "set wa-backend-00003 error_rate=0.07", "wait 9m", "alert wa-backend")
    first = sandbox.runtime.deps.store.incidents.open_incidents()[0]
    closed = run_lines(sandbox, "alert wa-backend closed")
    assert closed[0] == "(alert sandbox-wa-backend closed: closed)"
    run_lines(sandbox, "set wa-backend-00002 error_rate=0.03", "wait 9m")
    opened = run_lines(sandbox, "alert wa-backend")
    assert opened[0] == "(alert sandbox-wa-backend-2 open: created)"
    (second,) = sandbox.runtime.deps.store.incidents.open_incidents()
    assert second.id != first.id and second.observe_until is not None
    assert any("Observing Monitoring's minutes until" in line for line in opened)
