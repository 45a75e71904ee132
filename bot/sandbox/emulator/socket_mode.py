"""Slack's Socket Mode: ``apps.connections.open`` and the WebSocket it hands out.

As https://api.slack.com/apis/connections/socket-implement describes it (and as slack_sdk's
``socket_mode`` clients speak it): the app calls ``apps.connections.open`` with its app-level
token (``xapp-...``; a bot token answers ``not_allowed_token_type``) and gets a one-time
``url``; on connecting, Slack sends ``{"type": "hello", ...}``, then each event, slash command or
interaction as an envelope ``{"envelope_id", "type": "events_api" | "slash_commands" |
"interactive", "payload", "accepts_response_payload", "retry_attempt", "retry_reason"}``. The
app acks with ``{"envelope_id": ..., "payload": {...}}`` within 3 s. Before Slack refreshes a
connection it sends ``{"type": "disconnect", "reason": "warning" | "refresh_requested"}``; the
app opens a new one with ``apps.connections.open`` and the old one is closed.

The WebSocket server (the ``websockets`` library, on its own port and thread) starts on the
first ``apps.connections.open``. Every envelope and every ack is recorded in the router's
request log as ``slack.socket_mode.envelope`` and ``slack.socket_mode.ack`` (with the ack's
``latency_s``), so tests read the outcome where they read every other call.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from bot.sandbox.emulator.http import RecordedCall, RequestLog

if TYPE_CHECKING:
    from websockets.sync.server import Server, ServerConnection

ENVELOPE_TYPES = ("events_api", "slash_commands", "interactive")
DISCONNECT_REASONS = ("warning", "refresh_requested", "link_disabled")
ACK_DEADLINE_S = 3.0  # Slack shows the user an error when a command is not acked by then


@dataclass
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    sent_at: float
    acked_at: float | None = None
    response: Any = None  # the ack's "payload", when it had one

    @property
    def latency_s(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at


@dataclass
class _Link:
    connection: ServerConnection
    draining: bool = False  # sent a disconnect: no new envelopes go to it
    send_lock: threading.Lock = field(default_factory=threading.Lock)


class SocketModeEmulator:
    def __init__(self, app_token: str, app_id: str, calls: RequestLog) -> None:
        self.app_token = app_token
        self.app_id = app_id
        self.calls = calls
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._tickets: set[str] = set()
        self._links: list[_Link] = []
        self._envelopes: dict[str, Envelope] = {}
        self._server: Server | None = None
        self.connections_opened = 0

    # -- apps.connections.open -------------------------------------------------------------

    def open_url(self, host: str) -> str:
        """A one-time WebSocket URL, like ``wss://wss-primary.slack.com/link/?ticket=...``."""
        ticket = secrets.token_hex(16)
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://{self._start(host)}/link/?ticket={ticket}&app_id={self.app_id}"

    def _start(self, host: str) -> str:
        with self._lock:
            if self._server is None:
                from websockets.sync.server import serve

                self._server = serve(
                    self._serve_link,
                    host,
                    0,
                    process_request=self._check_ticket,
                    compression=None,
                )
                threading.Thread(
                    target=self._server.serve_forever, name="emulator-socket-mode", daemon=True
                ).start()
            bound_host, port = self._server.socket.getsockname()[:2]
        return f"{bound_host}:{port}"

    def stop(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            links, self._links = self._links, []
        for link in links:
            with contextlib.suppress(Exception):
                link.connection.close()
        if server is not None:
            server.shutdown()

    # -- the WebSocket -------------------------------------------------------------------------

    def _check_ticket(self, connection: ServerConnection, request: Any) -> Any:
        query = parse_qs(urlsplit(request.path).query)
        ticket = (query.get("ticket") or [""])[0]
        with self._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)  # each URL connects once
        if not valid:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid or used ticket\n")
        return None

    def _serve_link(self, connection: ServerConnection) -> None:
        link = _Link(connection)
        with self._changed:
            self.connections_opened += 1
            number = self.connections_opened
        self._send(link, self._hello(number))
        with self._changed:
            self._links.append(link)
            self._changed.notify_all()
        try:
            for raw in connection:
                self._receive(raw)
        except Exception:  # a dropped connection ends the link like a closed one
            pass
        finally:
            with self._changed:
                if link in self._links:
                    self._links.remove(link)
                self._changed.notify_all()

    def _hello(self, number: int) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": number,
            "debug_info": {
                "host": "applink-emulator",
                "build_number": 1,
                "approximate_connection_time": 3600,
            },
            "connection_info": {"app_id": self.app_id},
        }

    def _receive(self, raw: str | bytes) -> None:
        now = time.time()
        try:
            message = json.loads(raw)
        except ValueError:
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        with self._changed:
            envelope = self._envelopes.get(str(envelope_id))
            if envelope is None or envelope.acked_at is not None:
                return
            envelope.acked_at, envelope.response = now, message.get("payload")
            self._changed.notify_all()
        body = {
            "envelope_id": envelope.envelope_id,
            "payload": envelope.response,
            "latency_s": envelope.latency_s,
        }
        self.calls.append(RecordedCall("slack.socket_mode.ack", "WS", "/link/", {}, body, now))

    @staticmethod
    def _send(link: _Link, message: dict[str, Any]) -> None:
        with link.send_lock:
            link.connection.send(json.dumps(message))

    # -- what Slack sends (Python API for tests and the console) ------------------------------

    def deliver(self, kind: str, payload: dict[str, Any], timeout_s: float = 20.0) -> str:
        """Send ``payload`` as a ``kind`` envelope on a live connection (waiting for one, as
        Slack queues for a reconnecting app) and return its envelope_id."""
        if kind not in ENVELOPE_TYPES:
            raise ValueError(f"envelope type must be one of {ENVELOPE_TYPES}, not {kind!r}")
        link = self._live_link(timeout_s)
        envelope = Envelope(secrets.token_hex(12), kind, payload, time.time())
        with self._lock:
            self._envelopes[envelope.envelope_id] = envelope
        message = {
            "envelope_id": envelope.envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        self.calls.append(
            RecordedCall("slack.socket_mode.envelope", "WS", "/link/", {}, message, time.time())
        )
        envelope.sent_at = time.time()
        self._send(link, message)
        return envelope.envelope_id

    def _live_link(self, timeout_s: float) -> _Link:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                live = [link for link in self._links if not link.draining]
                if live:
                    return live[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no Socket Mode connection is open")
                self._changed.wait(left)

    def wait_ack(self, envelope_id: str, timeout_s: float = 20.0) -> Envelope:
        """The envelope once acked (late acks too: compare ``latency_s`` with 3 s)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                envelope = self._envelopes[envelope_id]
                if envelope.acked_at is not None:
                    return envelope
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"envelope {envelope_id} was never acked")
                self._changed.wait(left)

    def disconnect(self, reason: str = "refresh_requested") -> int:
        """Ask every open connection to reconnect; returns how many were asked. The app opens a
        new connection; the old one closes once the app has let it go."""
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"reason must be one of {DISCONNECT_REASONS}, not {reason!r}")
        with self._lock:
            links = [link for link in self._links if not link.draining]
            for link in links:
                link.draining = True
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink"}}
        for link in links:
            with contextlib.suppress(Exception):
                self._send(link, message)
        return len(links)

    def open_connections(self) -> int:
        """Connections open now, including those asked to disconnect but not yet closed."""
        with self._lock:
            return len(self._links)

    def wait_connections(self, opened: int, timeout_s: float = 20.0) -> None:
        """Wait until ``opened`` connections have been made in all and one is live."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.connections_opened < opened or not any(
                not link.draining for link in self._links
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fewer than {opened} Socket Mode connections were made")
                self._changed.wait(left)
