"""Hostile and malformed requests: replays, oversized and broken bodies, idle connections.

Every case runs against the real bot over HTTP (waitress, Bolt) wired to the emulators."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager

import pytest
import requests

from bot.runtime import build_runtime
from bot.sandbox.console import Sandbox
from bot.sandbox.slack_payloads import FORM, signed_headers
from bot.web import MAX_SLACK_BODY, BoundedServer, make_http_server
from tests.helpers import send_command, wait_until


def sign_bytes(secret: str, body: bytes, content_type: str = FORM) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


def footprint(box: Sandbox) -> tuple[int, int, int]:
    """What a handled request leaves behind: audit rows, Slack messages, Cloud Run PATCHes."""
    box.runtime.engine.wait_idle()
    return (
        len(box.runtime.deps.store.journal.audit()),
        len(box.emulator.slack.messages()),
        len(box.emulator.router.calls.list("run.services.patch")),
    )


@pytest.fixture
def serving(sandbox: Sandbox) -> Iterator[BoundedServer]:
    with second_instance(sandbox) as server:
        yield server


@contextmanager
def second_instance(sandbox: Sandbox) -> Iterator[BoundedServer]:
    """A second bot instance on the same database, emulators and signing secret, served the way
    `python -m bot serve` serves (make_http_server)."""
    runtime = build_runtime(sandbox.config, sandbox._settings, clock=sandbox.clock)
    server = make_http_server(runtime.wsgi, "127.0.0.1", 0, threads=4, request_deadline_s=1.0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        runtime.engine.wait_idle(timeout_s=10)
        runtime.engine.shutdown(wait=True)
        server.close()


def base_url(server: BoundedServer) -> str:
    return f"http://127.0.0.1:{server.effective_port}"


# -- replays ------------------------------------------------------------------------------------


def test_an_exact_replay_does_not_act_twice(sandbox: Sandbox) -> None:
    sandbox.run_line("as ana")
    body = sandbox.slash_body("/ops whoami")
    headers = signed_headers(sandbox.signing_secret, body)
    first = sandbox.http.post(sandbox.bot_url, data=body.encode(), headers=headers, timeout=5)
    assert first.status_code == 200
    before = footprint(sandbox)
    assert before[0] + before[1] > 0, "the first request did something visible"

    replay = sandbox.http.post(sandbox.bot_url, data=body.encode(), headers=headers, timeout=5)
    assert replay.status_code == 200 and replay.content == b"", "a harmless, empty ack"
    assert footprint(sandbox) == before


@pytest.mark.postgres
def test_a_replay_to_another_instance_does_not_act(pg_sandbox: Sandbox) -> None:
    """Instances share PostgreSQL; the replay reaches a second instance on it."""
    with second_instance(pg_sandbox) as serving:
        replay_to_another_instance(pg_sandbox, serving)


def replay_to_another_instance(sandbox: Sandbox, serving: BoundedServer) -> None:
    sandbox.run_line("as ana")
    body = sandbox.slash_body("/rollback wa-backend")
    headers = signed_headers(sandbox.signing_secret, body)
    assert sandbox.http.post(sandbox.bot_url, data=body.encode(), headers=headers).ok
    wait_until(lambda: sandbox.emulator.router.calls.list("run.services.patch"), what="PATCH")
    before = footprint(sandbox)

    other = f"{base_url(serving)}/slack/events"
    replay = requests.post(other, data=body.encode(), headers=headers, timeout=5)
    assert replay.status_code == 200 and replay.content == b""
    assert footprint(sandbox) == before, "no refusal, no message, no PATCH from the replay"


def test_a_fresh_signature_on_the_same_command_still_acts(sandbox: Sandbox) -> None:
    """Only the exact signed request is remembered: typing the command again works."""
    sandbox.run_line("as ana")
    body = sandbox.slash_body("/ops whoami")
    old = signed_headers(sandbox.signing_secret, body, timestamp=int(time.time()) - 1)
    assert sandbox.http.post(sandbox.bot_url, data=body.encode(), headers=old).ok
    before = footprint(sandbox)
    new = signed_headers(sandbox.signing_secret, body)
    assert sandbox.http.post(sandbox.bot_url, data=body.encode(), headers=new).ok
    assert footprint(sandbox)[1] == before[1] + 1, "answered again"


# -- malformed requests -------------------------------------------------------------------------


def test_a_body_larger_than_slack_sends_is_refused_before_it_is_read(
    serving: BoundedServer,
) -> None:
    address = ("127.0.0.1", serving.effective_port)
    with closing(socket.create_connection(address, timeout=5)) as sock:
        sock.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {MAX_SLACK_BODY + 1}\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
            + b"a" * 1024  # the rest never comes: the answer must not wait for it
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 413")


def test_a_chunked_body_larger_than_slack_sends_is_refused(serving: BoundedServer) -> None:
    chunks = (b"a" * 65536 for _ in range(MAX_SLACK_BODY // 65536 + 2))
    response = requests.post(
        f"{base_url(serving)}/slack/events", data=chunks, headers={"Content-Type": FORM}
    )
    assert response.status_code == 413


def _interaction(payload: object) -> bytes:
    from urllib.parse import urlencode

    return urlencode({"payload": json.dumps(payload)}).encode()


MALFORMED = {
    "payload=x": (b"payload=x", FORM),
    "payload is a JSON list": (_interaction([1, 2]), FORM),
    "empty actions": (_interaction({"type": "block_actions", "actions": []}), FORM),
    "no actions": (_interaction({"type": "block_actions"}), FORM),
    "deeply nested payload": (b"payload=" + b"%5B" * 100_000 + b"%5D" * 100_000, FORM),
    "JSON body that is a list": (b"[1, 2]", "application/json"),
    "JSON body that is not JSON": (b"{nope", "application/json"),
    "not UTF-8": (b"command=%2Fops&text=\xff\xfe", FORM),
    "unknown content type": (b"hello", "text/plain"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_signed_malformed_body_is_a_400(sandbox: Sandbox, case: str) -> None:
    body, content_type = MALFORMED[case]
    headers = sign_bytes(sandbox.signing_secret, body, content_type)
    response = sandbox.http.post(sandbox.bot_url, data=body, headers=headers, timeout=10)
    assert response.status_code == 400, response.text
    assert "Traceback" not in response.text
    assert footprint(sandbox) == (0, 0, 0)


UNSIGNED = {
    "no headers": {"Content-Type": FORM},
    "timestamp not a number": {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": "abc",
        "X-Slack-Signature": "v0=00",
    },
    "huge timestamp": {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": "9" * 40,
        "X-Slack-Signature": "v0=00",
    },
    "signature for another body": {**signed_headers("x", "other")},
}


@pytest.mark.parametrize("case", list(UNSIGNED))
@pytest.mark.parametrize("body", [b"payload=x", b'{"type": "url_verification"}', b"\xff"])
def test_an_unsigned_request_is_a_4xx(sandbox: Sandbox, case: str, body: bytes) -> None:
    response = sandbox.http.post(sandbox.bot_url, data=body, headers=UNSIGNED[case], timeout=10)
    assert response.status_code in (400, 401), response.text
    assert footprint(sandbox) == (0, 0, 0)


def test_a_good_timestamp_with_a_bad_signature_is_a_401(sandbox: Sandbox) -> None:
    body = sandbox.slash_body("/ops whoami")
    headers = {**signed_headers(sandbox.signing_secret, body), "X-Slack-Signature": "v0=1"}
    response = sandbox.http.post(sandbox.bot_url, data=body.encode(), headers=headers)
    assert response.status_code == 401


# -- connections that never finish --------------------------------------------------------------


def test_many_idle_connections_do_not_stop_healthz_or_commands(
    sandbox: Sandbox, serving: BoundedServer
) -> None:
    """More idle sockets than waitress accepts by default (100): /healthz and a signed command
    are still served at once."""
    with ExitStack() as stack:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", serving.effective_port), timeout=5)
            stack.enter_context(closing(sock))
        health = requests.get(f"{base_url(serving)}/healthz", timeout=5)
        assert health.status_code == 200
        sandbox.run_line("as ana")
        body = sandbox.slash_body("/ops whoami")
        headers = signed_headers(sandbox.signing_secret, body)
        answer = requests.post(
            f"{base_url(serving)}/slack/events", data=body.encode(), headers=headers, timeout=5
        )
        assert answer.status_code == 200


def test_more_idle_connections_than_allowed_only_delay_healthz_briefly(
    serving: BoundedServer,
) -> None:
    """Past the connection limit waitress stops accepting; idle connections then make room
    within seconds instead of the 30 s idle timeout."""
    limit = serving.adj.connection_limit
    with ExitStack() as stack:
        for _ in range(limit + 50):
            sock = socket.create_connection(("127.0.0.1", serving.effective_port), timeout=5)
            stack.enter_context(closing(sock))
        started = time.monotonic()
        health = requests.get(f"{base_url(serving)}/healthz", timeout=15)
        assert health.status_code == 200
        assert time.monotonic() - started < 10


def test_a_request_trickled_in_slowly_is_dropped_after_the_deadline(
    serving: BoundedServer,
) -> None:
    sock = socket.create_connection(("127.0.0.1", serving.effective_port), timeout=10)
    with closing(sock):
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")
        closed_at = None
        started = time.monotonic()
        while time.monotonic() - started < 8:  # a byte every 0.2 s never goes quiet
            try:
                sock.sendall(b"X")
                sock.settimeout(0.2)
                if sock.recv(1) == b"":
                    closed_at = time.monotonic()
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_at = time.monotonic()
                break
        assert closed_at is not None, "the server kept a request open that never finished"
        assert closed_at - started < 5


def test_python_m_bot_serve_keeps_serving_with_many_idle_connections(
    request: pytest.FixtureRequest,
) -> None:
    """The same, against the real `python -m bot serve` process."""
    emulator, bot = request.getfixturevalue("world")
    bot.start()
    with ExitStack() as stack:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", bot.port), timeout=5)
            stack.enter_context(closing(sock))
        assert requests.get(f"http://127.0.0.1:{bot.port}/healthz", timeout=5).ok
        send_command(emulator, bot.port, "/ops", "whoami")
        wait_until(lambda: emulator.slack.messages(), what="the answer to /ops whoami")


# -- signed, but not what Slack sends -------------------------------------------------------------


def _form(fields: dict[str, str]) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()


COMMAND = {
    "team_id": "T0SANDBOX",
    "channel_id": "C0INCIDENTS",
    "channel_name": "incidents",
    "user_id": "U0ANA",
    "user_name": "ana",
    "command": "/rollback",
    "text": "wa-backend",
    "api_app_id": "A0RUNBACK",
    "trigger_id": "1.2.3",
    "response_url": "http://127.0.0.1:9/nowhere",
}
SUBMISSION = {
    "type": "view_submission",
    "team": {"id": "T0SANDBOX"},
    "user": {"id": "U0MARTA", "username": "marta"},
    "view": {
        "id": "V1",
        "callback_id": "deploy_migration",
        "private_metadata": "{}",
        "state": {"values": {}},
    },
}
SIGNED_MALFORMED = {
    "a command without user_id": _form({k: v for k, v in COMMAND.items() if k != "user_id"}),
    "a command without channel_id": _form({k: v for k, v in COMMAND.items() if k != "channel_id"}),
    "a command whose user_id is empty": _form({**COMMAND, "user_id": ""}),
    "a view_submission without user": _interaction(
        {k: v for k, v in SUBMISSION.items() if k != "user"}
    ),
    "a view_submission whose view is a string": _interaction({**SUBMISSION, "view": "V1"}),
    "a view_submission whose state is a list": _interaction(
        {**SUBMISSION, "view": {**SUBMISSION["view"], "state": [1]}}
    ),
    "a migration check whose view is a number": _interaction(
        {**SUBMISSION, "view": 7, "callback_id": "migration_check"}
    ),
    "a click whose user is a string": _interaction(
        {
            "type": "block_actions",
            "user": "U0LUIS",
            "channel": {"id": "C0INCIDENTS"},
            "actions": [{"action_id": "release_roll_back", "value": "x"}],
        }
    ),
    "a click without a channel": _interaction(
        {
            "type": "block_actions",
            "user": {"id": "U0LUIS"},
            "actions": [{"action_id": "release_roll_back", "value": "x"}],
        }
    ),
}


@pytest.mark.parametrize("case", list(SIGNED_MALFORMED))
def test_a_signed_payload_slack_would_never_send_gets_a_4xx_never_a_500(
    sandbox: Sandbox, case: str
) -> None:
    body = SIGNED_MALFORMED[case]
    response = sandbox.http.post(
        sandbox.bot_url, data=body, headers=sign_bytes(sandbox.signing_secret, body), timeout=10
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert "Traceback" not in response.text
    assert footprint(sandbox)[1:] == (0, 0), "no message, no PATCH"
