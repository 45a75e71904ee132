"""waitress as `serve` runs it. Its own module so that `serve` can listen before bot.web's
imports (Bolt's WSGI adapter, SQLAlchemy) are loaded; bot.web re-exports both names."""

from __future__ import annotations

from typing import Any

from waitress.adjustments import Adjustments
from waitress.server import TcpWSGIServer

# The largest thing Slack posts is an interaction payload that carries a whole message or modal
# (at most 50 or 100 blocks of at most 3,000 characters, URL-encoded JSON): well under 1 MiB.
MAX_SLACK_BODY = 1024 * 1024


class BoundedServer(TcpWSGIServer):
    """waitress, where a client that trickles a request in byte by byte is dropped once
    ``request_deadline_s`` has passed (waitress itself only drops connections that go quiet),
    and where, once connections run short, those idle for ``crowded_idle_s`` make room."""

    request_deadline_s = 10.0
    crowded_idle_s = 2.0

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        crowded = len(self.active_channels) >= 0.8 * self.adj.connection_limit
        for channel in list(self.active_channels.values()):
            if channel.requests:  # being answered: never cut
                channel.request_started = None
                continue
            if crowded and now - channel.last_activity > self.crowded_idle_s:
                channel.will_close = True
            if channel.request is None:
                channel.request_started = None
            elif getattr(channel, "request_started", None) is None:
                channel.request_started = now
            elif now - channel.request_started > self.request_deadline_s:
                channel.will_close = True


def make_http_server(
    app: Any, host: str, port: int, threads: int = 16, request_deadline_s: float = 10.0
) -> BoundedServer:
    """The HTTP server for ``serve``: idle or slow clients cannot starve /healthz and Slack.

    Idle connections are closed after 30 s (after 2 s once 80% of the 1,000 allowed are open;
    waitress's default limit of 100 is easy to exhaust), a request must arrive whole within the
    deadline, and no body larger than Slack's is buffered."""
    adjustments = Adjustments(
        host=host,
        port=port,
        threads=threads,
        connection_limit=1000,
        channel_timeout=30,
        cleanup_interval=1,
        asyncore_use_poll=True,  # select() cannot watch file descriptors above 1023
        max_request_body_size=MAX_SLACK_BODY,
    )
    server = BoundedServer(app, adj=adjustments)
    server.request_deadline_s = request_deadline_s
    return server
