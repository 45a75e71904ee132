"""The sandbox page's server, over a real socket, without a browser: it listens on 127.0.0.1
only, refuses what another website could send it, runs console lines, clicks and forms through
the Sandbox's own code paths, streams the workspace as server-sent events, and serves the files
the bot uploaded. The page itself is tested in Chromium (tests/test_sandbox_browser.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.sandbox.console import Sandbox
from bot.sandbox.web import WebPage

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def web(sandbox: Sandbox) -> Iterator[WebPage]:
    page = WebPage(sandbox).start(0)
    try:
        yield page
    finally:
        page.stop()


def call(web: WebPage, path: str, body: dict[str, Any], **headers: str) -> requests.Response:
    sent = {"Content-Type": "application/json", "X-Runback-Token": web.token, **headers}
    return requests.post(
        web.url + path.lstrip("/"), data=json.dumps(body), headers=sent, timeout=90
    )


def line(web: WebPage, text: str) -> list[str]:
    answer = call(web, "/api/line", {"line": text})
    assert answer.status_code == 200, answer.text
    return answer.json()["output"]


def state(web: WebPage) -> dict[str, Any]:
    answer = requests.get(web.url + "api/state", timeout=10)
    assert answer.status_code == 200
    return answer.json()


def serving(web: WebPage, service: str) -> dict[str, int]:
    found = next(s for s in state(web)["services"] if s["name"] == service)
    return {r["revision"]: r["percent"] for r in found["revisions"] if r["percent"]}


# -- who may talk to it --------------------------------------------------------------------------


def test_it_listens_on_the_loopback_address_only(web: WebPage) -> None:
    assert web.url.startswith("http://127.0.0.1:")
    assert web._server.socket.getsockname()[0] == "127.0.0.1"


def test_the_page_carries_its_token_and_a_strict_content_security_policy(web: WebPage) -> None:
    page = requests.get(web.url, timeout=10)
    assert page.status_code == 200
    assert f'content="{web.token}"' in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    for asset in ("blockkit.js", "page.js", "panel.js", "page.css"):
        assert requests.get(web.url + "static/" + asset, timeout=10).status_code == 200
    assert requests.get(web.url + "static/../server.py", timeout=10).status_code == 404


def test_a_page_under_another_host_name_is_refused(web: WebPage) -> None:
    """DNS rebinding: a website whose name resolves to 127.0.0.1 names itself in Host."""
    headers = {"Host": f"attacker.example:{web.port}"}
    assert requests.get(web.url, headers=headers, timeout=10).status_code == 403
    assert requests.get(web.url + "api/state", headers=headers, timeout=10).status_code == 403
    refused = call(web, "/api/line", {"line": "/rollback wa-backend"}, Host=headers["Host"])
    assert refused.status_code == 403
    assert requests.get(web.url, headers={"Host": f"localhost:{web.port}"}, timeout=10).ok


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Runback-Token": ""}, id="no-token"),
        pytest.param({"X-Runback-Token": "guessed"}, id="wrong-token"),
        pytest.param({"Origin": "https://attacker.example"}, id="other-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site"),
        pytest.param({"Content-Type": "text/plain"}, id="simple-form-post"),
    ],
)
def test_a_command_another_website_could_send_changes_nothing(
    web: WebPage, sandbox: Sandbox, headers: dict[str, str]
) -> None:
    refused = call(web, "/api/line", {"line": "/rollback wa-backend forged"}, **headers)
    assert refused.status_code == 403
    assert sandbox.emulator.slack.messages() == []
    assert serving(web, "wa-backend") == {"wa-backend-00003": 100}


def test_the_own_origin_with_the_token_runs_the_line(web: WebPage, sandbox: Sandbox) -> None:
    origin = f"http://127.0.0.1:{web.port}"
    answer = call(
        web, "/api/line", {"line": "as luis"}, Origin=origin, **{"Sec-Fetch-Site": "same-origin"}
    )
    assert answer.status_code == 200 and answer.json()["output"] == ["(you are now luis)"]
    assert sandbox.user == "luis"


# -- what it does ----------------------------------------------------------------------------------


def test_a_slash_command_runs_as_a_signed_request_and_the_panel_shows_the_truth(
    web: WebPage,
) -> None:
    shown = line(web, "/rollback wa-backend errors after v1.2.0")
    assert any("Done in" in text for text in shown)
    assert serving(web, "wa-backend") == {"wa-backend-00002": 100}
    snapshot = state(web)
    card = next(m for m in snapshot["messages"] if "Rollback" in json.dumps(m["blocks"]))
    assert card["channel"] == "C0INCIDENTS" and card["version"] > 1 and not card["ephemeral"]
    assert snapshot["names"]["U0ANA"] == "ana"


def test_a_console_error_is_one_clear_answer_and_changes_nothing(web: WebPage) -> None:
    answer = call(web, "/api/line", {"line": "as nobody"})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("no sandbox user 'nobody'")
    assert call(web, "/api/line", {"line": "as ana\n/rollback wa-backend"}).status_code == 400
    assert serving(web, "wa-backend") == {"wa-backend-00003": 100}


def test_an_ack_answer_is_shown_to_its_user_only(web: WebPage) -> None:
    line(web, "/rollbak wa-backend")
    mine = [m for m in state(web)["messages"] if m["ephemeral"]]
    assert len(mine) == 1 and "/rollback" in json.dumps(mine[0])
    line(web, "as luis")
    assert [m for m in state(web)["messages"] if m["ephemeral"]] == []


def test_a_click_is_sent_for_the_button_of_that_very_message(web: WebPage) -> None:
    line(web, "as luis")
    line(web, "/rollback wa-backend wa-backend-00001 first")  # scheduled: a tech lead approves
    line(web, "/rollback wa-backend-staging wa-backend-staging-00001 second")
    first = next(
        m for m in state(web)["messages"] if "first" in json.dumps(m["blocks"]) and m["root"]
    )
    line(web, "as sofia")
    clicked = call(web, "/api/click", {"ts": first["ts"], "label": "Approve"})
    assert clicked.status_code == 200, clicked.text
    assert any("Done in" in text for text in clicked.json()["output"])
    assert serving(web, "wa-backend") == {"wa-backend-00001": 100}
    assert serving(web, "wa-backend-staging") == {"wa-backend-staging-00003": 100}
    missing = call(web, "/api/click", {"ts": first["ts"], "label": "No such button"})
    assert missing.status_code == 422


def test_a_form_keeps_its_errors_beside_the_field_then_closes_once_accepted(
    web: WebPage,
) -> None:
    line(web, "as marta")
    line(
        web,
        "/deploy wa-backend us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0 --migration",
    )
    view = state(web)["view"]
    assert view is not None and view["view"]["callback_id"] == "deploy_migration"
    sql = "ALTER TABLE reservas DROP COLUMN fecha;"
    refused = call(web, "/api/submit", {"view_id": view["id"], "values": {"sql": sql}})
    assert refused.status_code == 200
    assert "feature flag" in refused.json()["errors"]["flag"]
    assert state(web)["view"]["id"] == view["id"]  # still open
    line(web, "/ops migration-check")
    check = state(web)["view"]
    accepted = call(
        web, "/api/submit", {"view_id": check["id"], "values": {"sql": sql, "dialect": "mysql"}}
    )
    assert accepted.json()["errors"] == {}
    assert state(web)["view"] is None
    verdict = [m for m in state(web)["messages"] if m["ephemeral"]][-1]
    assert "MySQL" in json.dumps(verdict["blocks"])


def test_a_closed_form_stays_closed(web: WebPage) -> None:
    line(web, "/ops migration-check")
    view = state(web)["view"]
    assert call(web, "/api/close-view", {"view_id": view["id"]}).status_code == 200
    assert state(web)["view"] is None


def test_the_event_stream_sends_the_workspace_and_again_when_it_changes(web: WebPage) -> None:
    with requests.get(web.url + "api/events", stream=True, timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        events = _events(stream.iter_lines(decode_unicode=True))
        first = next(events)
        assert first["me"]["name"] == "ana" and first["messages"] == []
        line(web, "/rollback wa-backend")
        while not any("Done in" in json.dumps(m["blocks"]) for m in next(events)["messages"]):
            pass  # each event is a change; the card's last one says done (bounded by the timeout)


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for text in lines:
        if text.startswith("data: "):
            yield json.loads(text.removeprefix("data: "))


def test_an_uploaded_file_is_served_for_download(web: WebPage, sandbox: Sandbox) -> None:
    line(web, "set wa-backend-00003 error_rate=0.07")
    line(web, "wait 9m")
    line(web, "alert wa-backend")
    draft = next(
        f for m in state(web)["messages"] for f in m["files"] if f["name"].startswith("postmortem-")
    )
    assert not draft["image"] and draft["url"].startswith("/files/")
    got = requests.get(web.url.rstrip("/") + draft["url"] + "?download", timeout=10)
    assert got.status_code == 200
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert got.content == sandbox.emulator.slack.file_content(draft["id"])
    assert requests.get(web.url + "files/F404/x.md", timeout=10).status_code == 404


# -- how it is started ---------------------------------------------------------------------------


def test_web_only_serves_the_page_without_a_console_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "--web-only", "--web-port", "0"],
        cwd=REPO,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # blocks until the page is up (the test's timeout)
        url = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert url, first
        assert "Runback sandbox" in requests.get(url.group(0), timeout=10).text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()


def test_the_console_prints_the_page_url_beside_its_prompt() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "sandbox", "--web-port", "0"],
        cwd=REPO,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        input="quit\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"in your browser: http://127\.0\.0\.1:\d+/$", done.stdout, re.M)
    assert done.stdout.splitlines()[-1] == "ana@#incidents> quit"
    without = subprocess.run(
        [sys.executable, "-m", "bot", "sandbox", "--no-web"],
        cwd=REPO,
        input="quit\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "in your browser" not in without.stdout


def test_only_the_sandbox_and_the_cli_import_the_page() -> None:
    outside = [
        path
        for path in (REPO / "bot").rglob("*.py")
        if "sandbox" not in path.relative_to(REPO / "bot").parts and path.name != "__main__.py"
    ]
    offenders = [
        str(path.relative_to(REPO))
        for path in outside
        if re.search(r"bot\.sandbox\.web|bot\.sandbox import web", path.read_text("utf-8"))
    ]
    assert outside and offenders == []
