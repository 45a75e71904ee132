"""The bot's own CPU per ack, in process: signed ``/ops help`` requests through the whole WSGI
app (the Gate, the replay guard, Bolt, the listener), one at a time, beside the smallest Bolt
app (bench/minimal_bolt.py) answering the same. The ack latency under 20 senders (bench/ack.py)
moves with everything else the two cores run; this figure does not, so it shows what the
bot itself adds to an ack.

    python -m bench.ack_cpu
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bot.config import load_config
from bot.sandbox.console import BOT_TOKEN, Sandbox
from bot.sandbox.slack_payloads import signed_headers, slash_command

ROUNDS = 7
PER_ROUND = 300

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Any]


def environ(body: str, headers: dict[str, str]) -> dict[str, Any]:
    raw = body.encode()
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/slack/events",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "3000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": headers["Content-Type"],
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }
    for name, value in headers.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def one_ack(app: Wsgi, request: tuple[str, dict[str, str]], expect: bytes) -> None:
    status: list[str] = []
    body = b"".join(app(environ(*request), lambda s, h, *_: status.append(s)))
    if not status or not status[0].startswith("200") or expect not in body:
        raise RuntimeError(f"/ops help was not answered: {status} {body[:200]!r}")


def cpu_per_ack(
    app: Wsgi, requests: Callable[[int], list[tuple[str, dict[str, str]]]], expect: bytes
) -> float:
    """The least, over rounds, of this process's CPU seconds per ack: the round least disturbed."""
    rounds = []
    for _ in range(ROUNDS):
        batch = requests(PER_ROUND)
        started = time.process_time()
        for request in batch:
            one_ack(app, request, expect)
        rounds.append((time.process_time() - started) / PER_ROUND)
    return min(rounds)


def main(argv: list[str] | None = None) -> int:
    app_yaml = os.path.join(os.path.dirname(__file__), "..", "app.yaml")
    box = Sandbox(load_config(app_yaml), scheduler=False)  # nothing but the acks runs
    try:
        user, channel = next(iter(box.users.values())), next(iter(box.channels.values()))

        def requests(n: int) -> list[tuple[str, dict[str, str]]]:
            made = []
            for _ in range(n):
                url = box.emulator.slack.new_response_url(channel, user)
                body = slash_command("/ops", "help", user, "u", channel, "c", url, "t.1")
                made.append((body, signed_headers(box.signing_secret, body)))
            return made

        one_ack(box.runtime.wsgi, requests(1)[0], b"/rollback")
        box.runtime.warm_up()
        bot = cpu_per_ack(box.runtime.wsgi, requests, b"/rollback")

        os.environ.update(
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=box.signing_secret,
            SLACK_API_URL=box.emulator.env()["SLACK_API_URL"],
        )
        from slack_bolt.adapter.wsgi import SlackRequestHandler

        from bench.minimal_bolt import build_app

        minimal = cpu_per_ack(SlackRequestHandler(build_app()), requests, b"ok")
    finally:
        box.close()
    print(f"CPU per /ops help ack, in process (best of {ROUNDS} rounds of {PER_ROUND}):")
    print(f"  the bot             {bot * 1e6:7.0f} µs")
    print(f"  a minimal Bolt app  {minimal * 1e6:7.0f} µs")
    print(f"  the bot adds        {(bot - minimal) * 1e6:7.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
