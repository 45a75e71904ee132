"""The smallest Bolt app served the way Runback is: the cold-start baseline for bench.run.

One ``/ops`` command that acks, Bolt's WSGI adapter, waitress with the same thread count as
``python -m bot serve``, and a WebClient pointed at ``$SLACK_API_URL`` (so Bolt's start-up
``auth.test`` hits the same emulator). Environment: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET,
SLACK_API_URL, PORT, HOST.

    python -m bench.minimal_bolt
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from waitress import create_server


def build_app() -> App:
    client = WebClient(
        token=os.environ["SLACK_BOT_TOKEN"],
        base_url=os.environ.get("SLACK_API_URL") or WebClient.BASE_URL,
        timeout=10,
    )
    app = App(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=True,  # as bot/slack/app.py
    )

    @app.command("/ops")
    def ops(ack: Ack) -> None:
        ack(text="ok")

    return app


def main() -> int:
    handler = SlackRequestHandler(build_app())
    host = os.environ.get("HOST", "0.0.0.0")
    server = create_server(handler, host=host, port=int(os.environ.get("PORT") or 3000), threads=16)
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    print(f"minimal-bolt: listening on http://{host}:{server.effective_port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt, OSError):
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
