"""A small threaded HTTP router shared by every REST emulator, with fault injection.

Each route has an ``api`` name (e.g. ``run.services.patch``, ``slack.chat.postMessage``). The
control API can make the next N calls of an api fail with a status and/or a delay, and every call
is recorded so tests can count what the bot actually sent.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern
    base_url: str = ""  # e.g. "http://127.0.0.1:8123", to build absolute URLs

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode())


def text_response(text: str, status: int = 200, content_type: str = "text/plain") -> Response:
    return Response(status, text.encode(), content_type)


# Builds the error body an API family answers with (Google JSON error, Slack ok:false, ...).
ErrorFormat = Callable[[int, str], Response]


def google_error(status: int, message: str) -> Response:
    codes = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ABORTED",
        412: "FAILED_PRECONDITION",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }
    body = {"error": {"code": status, "message": message, "status": codes.get(status, "UNKNOWN")}}
    return json_response(body, status)


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    api: str
    handler: Callable[[Request], Response]
    error_format: ErrorFormat


@dataclass
class Fault:
    api: str
    status: int | None  # None: delay only
    delay_ms: int = 0
    times: int | None = 1  # None: every call until cleared
    message: str = "injected fault"
    # True: the call is carried out first, then its answer is delayed and/or replaced by the
    # error (the server applied it but the client never heard: a lost or late response)
    after: bool = False


@dataclass
class RecordedCall:
    api: str
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    at: float


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, api: str) -> Fault | None:
        """The fault that applies to this call, if any, consuming one of its uses."""
        with self._lock:
            for fault in self._faults:
                if fault.api == api:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []

    def append(self, call: RecordedCall) -> None:
        with self._lock:
            self._calls.append(call)

    def list(self, api: str | None = None) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self._calls if api is None or c.api == api]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.faults = Faults()
        self.calls = RequestLog()

    def add(
        self,
        method: str,
        pattern: str,
        api: str,
        handler: Callable[[Request], Response],
        error_format: ErrorFormat = google_error,
    ) -> None:
        """Register ``handler`` for ``method`` and a full-match regex ``pattern`` on the path."""
        self.routes.append(Route(method, re.compile(pattern), api, handler, error_format))

    def dispatch(self, request: Request) -> Response:
        path_matched = False
        for route in self.routes:
            match = route.pattern.fullmatch(request.path)
            if not match:
                continue
            path_matched = True
            if route.method != request.method:
                continue
            request.params = {k: v for k, v in match.groupdict().items() if v is not None}
            return self._call(route, request)
        if path_matched:
            return google_error(405, f"method {request.method} not allowed on {request.path}")
        return google_error(404, f"no such endpoint: {request.method} {request.path}")

    def _call(self, route: Route, request: Request) -> Response:
        if not route.api.startswith("_emulator"):
            self.calls.append(
                RecordedCall(
                    route.api,
                    request.method,
                    request.path,
                    request.query,
                    _decoded_body(request),
                    time.time(),
                )
            )
            fault = self.faults.take(route.api)
            if fault is not None and fault.after:
                return self._then_fault(route, request, fault)
            if fault is not None:
                if fault.delay_ms:
                    time.sleep(fault.delay_ms / 1000)
                if fault.status is not None:
                    return route.error_format(fault.status, fault.message)
        try:
            return route.handler(request)
        except HttpError as error:
            return route.error_format(error.status, error.message)

    def _then_fault(self, route: Route, request: Request, fault: Fault) -> Response:
        try:
            response = route.handler(request)
        except HttpError as error:
            response = route.error_format(error.status, error.message)
        if fault.delay_ms:
            time.sleep(fault.delay_ms / 1000)
        if fault.status is not None:
            return route.error_format(fault.status, fault.message)
        return response


class HttpError(Exception):
    """Raised by a handler to answer with its API family's error format."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _decoded_body(request: Request) -> Any:
    if not request.body:
        return None
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        try:
            return json.loads(request.body)
        except ValueError:
            return request.body.decode(errors="replace")
    if "form" in content_type:
        return {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
    return request.body.decode(errors="replace")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # would hold every body back ~40 ms and distort every timing taken against the emulator.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host, port = str(self.server.server_address[0]), self.server.server_address[1]
        request = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base_url=f"http://{host}:{port}",
        )
        try:
            response = self.server.router.dispatch(request)
        except Exception as error:  # an emulator bug must show up as a 500, not a hang
            response = google_error(500, f"emulator error: {error!r}")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class EmulatorHTTPServer(ThreadingHTTPServer):
    """One thread per connection, as http.server does; ``server_close`` also ends the
    connections clients keep alive, whose threads would otherwise outlive the emulator."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        self.router = router
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone before its answer (its timeout, a killed bot) is not an emulator error:
        a real server logs nothing for it either; anything else is printed as before."""
        if isinstance(sys.exc_info()[1], ConnectionError):  # broken pipe, reset
            return
        super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        with self._open_lock:
            still_open, self._open = list(self._open), set()
        for connection in still_open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def serve_in_thread(router: Router, host: str = "127.0.0.1", port: int = 0) -> EmulatorHTTPServer:
    server = EmulatorHTTPServer((host, port), router)
    # A short poll interval: shutdown() waits for it, once per test that starts an emulator.
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="emulator-http",
        daemon=True,
    )
    thread.start()
    return server
