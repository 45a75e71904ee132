"""Cold start: `serve` listens and acks before the bot's heavy libraries are loaded, then hands
what it acked to the bot, which does exactly what it would have done."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import requests

from bot.http_server import make_http_server
from bot.sandbox.console import Sandbox
from bot.sandbox.slack_payloads import signed_headers
from bot.serving import Gate
from tests.helpers import REPO, wait_until

HEAVY = ("sqlalchemy", "pydantic", "jinja2", "yaml", "google", "grpc", "slack_bolt")


def test_serve_listens_with_none_of_the_heavy_libraries_imported() -> None:
    """What `python -m bot serve` imports before it listens: bot.__main__ and bot.serving."""
    code = (
        "import sys, bot.__main__, bot.serving; "
        f"print([m for m in {HEAVY!r} if any(n.split('.')[0] == m for n in sys.modules)])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.fixture
def gate(sandbox: Sandbox) -> Iterator[tuple[Gate, str]]:
    """A Gate in front of the sandbox's bot, served on its own port, not yet open."""
    gate = Gate(sandbox.signing_secret)
    server = make_http_server(gate, "127.0.0.1", 0)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield gate, f"http://127.0.0.1:{server.effective_port}"
    finally:
        gate.open(sandbox.runtime.wsgi)  # let every waiting request go before closing
        server.close()


def post(base: str, body: str, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{base}/slack/events", data=body.encode(), headers=headers, timeout=10)


def test_commands_are_acked_before_the_bot_is_loaded_and_then_done(
    sandbox: Sandbox, gate: tuple[Gate, str]
) -> None:
    front, base = gate
    sandbox.run_line("as ana")
    help_body = sandbox.slash_body("/ops help")
    rollback_body = sandbox.slash_body("/rollback wa-backend")
    for body in (help_body, rollback_body):
        early = post(base, body, signed_headers(sandbox.signing_secret, body))
        assert (early.status_code, early.content) == (200, b"")
    assert sandbox.emulator.router.calls.list("run.services.patch") == []

    direct = sandbox.slash_body("/ops help")
    base_of_bot = sandbox.bot_url.removesuffix("/slack/events")
    acked = post(base_of_bot, direct, signed_headers(sandbox.signing_secret, direct)).json()

    front.open(sandbox.runtime.wsgi)
    calls = sandbox.emulator.router.calls
    wait_until(lambda: calls.list("run.services.patch"), what="the rollback's PATCH")

    def help_posted() -> bool:  # what the bot acks /ops help with, at the response_url
        answers = [c.body for c in calls.list("slack.response_url")]
        return any(a.get("text") == acked["text"] and a.get("blocks") for a in answers)

    wait_until(help_posted, what="the help message at the command's response_url")
    sandbox.runtime.engine.wait_idle()
    assert len(calls.list("run.services.patch")) == 1


def test_unsigned_requests_and_health_wait_for_the_bot(
    sandbox: Sandbox, gate: tuple[Gate, str]
) -> None:
    front, base = gate
    sandbox.run_line("as ana")
    body = sandbox.slash_body("/rollback wa-backend")
    with ThreadPoolExecutor(2) as pool:
        forged: Future[requests.Response] = pool.submit(
            post, base, body, signed_headers("not-the-secret", body)
        )
        health = pool.submit(requests.get, f"{base}/healthz", timeout=10)
        front.open(sandbox.runtime.wsgi)
        assert forged.result().status_code == 401  # the bot's own answer, not an early ack
        assert health.result().json() == {"status": "ok"}
    sandbox.runtime.engine.wait_idle()
    assert sandbox.emulator.router.calls.list("run.services.patch") == []


def test_a_gate_whose_bot_failed_to_load_answers_503(gate: tuple[Gate, str]) -> None:
    front, base = gate
    with ThreadPoolExecutor(1) as pool:
        health = pool.submit(requests.get, f"{base}/healthz", timeout=10)
        front.fail()
        assert health.result().status_code == 503


def test_modal_submissions_are_not_acked_early(sandbox: Sandbox) -> None:
    """A view_submission's ack can carry errors for the modal: only the bot can give it."""
    gate = Gate(sandbox.signing_secret)
    payload = json.dumps({"type": "view_submission", "view": {}})
    body = "payload=" + requests.utils.quote(payload)
    headers = signed_headers(sandbox.signing_secret, body)
    environ = {
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": headers["X-Slack-Request-Timestamp"],
        "HTTP_X_SLACK_SIGNATURE": headers["X-Slack-Signature"],
    }
    assert not gate._acks_early(environ, body.encode())
    click = "payload=" + requests.utils.quote(json.dumps({"type": "block_actions"}))
    headers = signed_headers(sandbox.signing_secret, click)
    environ = {
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": headers["X-Slack-Request-Timestamp"],
        "HTTP_X_SLACK_SIGNATURE": headers["X-Slack-Signature"],
    }
    assert gate._acks_early(environ, click.encode())
