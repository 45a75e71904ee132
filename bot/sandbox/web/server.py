"""The sandbox's web page: a small WSGI app on waitress, on 127.0.0.1 only.

GET  /                      the page (static/index.html, with this run's token in it)
GET  /static/NAME           its CSS and JavaScript (shipped in the package; no CDN, no build step)
GET  /api/state             the workspace snapshot (workspace.py) as JSON
GET  /api/events            the same snapshot as server-sent events, sent again on each change
GET  /files/ID/NAME         a file the bot uploaded (the postmortem draft, the release chart)
POST /api/line              {"line"}: one console line, through Sandbox.run_line
POST /api/click             {"ts", "label"}: a button on one message, as a signed block_actions
POST /api/submit            {"view_id", "values"}: a modal, as a signed view_submission
POST /api/close-view        {"view_id"}: the user closed a modal

The page drives a bot, so no other website may drive it: every request must name this server in
its Host header (a DNS-rebinding page names its own), and every POST must carry this run's random
token in X-Runback-Token (a cross-site page can neither read it nor send that header without a
CORS preflight, which is never granted) and, when the browser says where it comes from, come
from this very origin. A Content-Security-Policy allows only the page's own scripts, and no
framing, so even a rendering mistake cannot run a payload's markup.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from bot.sandbox.console import ConsoleError, Sandbox, describe_error
from bot.sandbox.web.workspace import Workspace

log = logging.getLogger("runback.sandbox.web")

StartResponse = Callable[..., Any]
STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
TOKEN_PLACEHOLDER = "__RUNBACK_TOKEN__"
TOKEN_HEADER = "HTTP_X_RUNBACK_TOKEN"
MAX_BODY = 256 * 1024
POLL_S = 0.25  # how often a stream looks for changes
KEEPALIVE_S = 15.0
MAX_STREAMS = 8  # open event streams (each holds a server thread)
THREADS = MAX_STREAMS + 6
INLINE_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")
SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class WebPage:
    """The page of one sandbox; ``start`` it, read ``url``, ``stop`` it."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.workspace = Workspace(sandbox)
        self.token = secrets.token_urlsafe(24)
        self.port = 0
        self._stopping = threading.Event()
        self._streams = 0
        self._streams_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cached: tuple[float, bytes] = (0.0, b"")
        self._server: Any = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, port: int = 0) -> WebPage:
        """Listen on 127.0.0.1:``port``; when that port is taken, on any free one."""
        from waitress import create_server

        try:
            self._server = create_server(self.wsgi, host="127.0.0.1", port=port, threads=THREADS)
        except OSError:
            if port == 0:
                raise
            self._server = create_server(self.wsgi, host="127.0.0.1", port=0, threads=THREADS)
        self.port = int(self._server.effective_port)
        threading.Thread(target=self._serve, name="sandbox-web", daemon=True).start()
        return self

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closing the server ends run() with EBADF
            self._server.run()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            # Let open streams see the stop and end, so waitress never writes to a closed socket.
            deadline = time.monotonic() + 2 * POLL_S + 1
            while self._server.task_dispatcher.active_count and time.monotonic() < deadline:
                time.sleep(POLL_S / 5)
            self._server.close()
            self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)
            self._server = None

    # -- the WSGI app -------------------------------------------------------------------------

    def wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if not self._host_allowed(environ):
            return _json(start_response, 403, {"error": "this page answers on 127.0.0.1 only"})
        if method == "POST":
            refusal = self._refuse_post(environ)
            if refusal:
                return _json(start_response, 403, {"error": refusal})
            return self._post(environ, start_response, path)
        if method != "GET":
            return _json(start_response, 405, {"error": "GET or POST"})
        if path == "/":
            page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
            body = page.replace(TOKEN_PLACEHOLDER, self.token).encode()
            return _send(start_response, 200, body, CONTENT_TYPES[".html"])
        if path.startswith("/static/"):
            return self._static(start_response, path.removeprefix("/static/"))
        if path == "/api/state":
            body = json.dumps(self.workspace.snapshot(), ensure_ascii=False).encode()
            return _send(start_response, 200, body, "application/json")
        if path == "/api/events":
            return self._events(start_response)
        if path.startswith("/files/"):
            return self._file(environ, start_response, path.removeprefix("/files/"))
        return _json(start_response, 404, {"error": f"no page {path}"})

    def _host_allowed(self, environ: dict[str, Any]) -> bool:
        host = environ.get("HTTP_HOST", "")
        return host in (f"127.0.0.1:{self.port}", f"localhost:{self.port}")

    def _refuse_post(self, environ: dict[str, Any]) -> str:
        """Why a POST is refused ("" when it may run)."""
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin != f"http://{environ.get('HTTP_HOST', '')}":
            return "cross-origin request refused"
        if environ.get("HTTP_SEC_FETCH_SITE", "same-origin") not in ("same-origin", "none"):
            return "cross-site request refused"
        given = environ.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return "missing or wrong page token (reload the page)"
        if not environ.get("CONTENT_TYPE", "").startswith("application/json"):
            return "JSON only"
        return ""

    # -- reads --------------------------------------------------------------------------------

    def _static(self, start_response: StartResponse, name: str) -> Iterable[bytes]:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*\.(css|js|svg)", name):
            return _json(start_response, 404, {"error": "no such asset"})
        path = STATIC_DIR / name
        if not path.is_file():
            return _json(start_response, 404, {"error": "no such asset"})
        return _send(start_response, 200, path.read_bytes(), CONTENT_TYPES[path.suffix])

    def _snapshot_json(self) -> bytes:
        """The snapshot as JSON for the streams, built at most once per half poll for all."""
        with self._cache_lock:
            built_at, payload = self._cached
            if time.monotonic() - built_at > POLL_S / 2 or not payload:
                payload = json.dumps(self.workspace.snapshot(), ensure_ascii=False).encode()
                self._cached = (time.monotonic(), payload)
            return payload

    def _events(self, start_response: StartResponse) -> Iterable[bytes]:
        with self._streams_lock:
            if self._streams >= MAX_STREAMS:
                return _json(start_response, 503, {"error": "too many open pages"})
            self._streams += 1
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("X-Accel-Buffering", "no"),
                *SECURITY_HEADERS,
            ],
        )
        return self._stream()

    def _stream(self) -> Iterator[bytes]:
        """The snapshot whenever it changes (the first one at once), a comment now and then so
        that a closed tab is noticed; ends when the server stops or the client goes."""
        try:
            yield b"retry: 1000\n\n"
            sent, quiet_since = b"", time.monotonic()
            while not self._stopping.is_set():
                try:
                    payload = self._snapshot_json()
                except Exception:  # the sandbox is closing; the page reconnects or stays put
                    log.debug("snapshot failed", exc_info=True)
                    payload = sent
                if payload != sent:
                    yield b"event: state\ndata: " + payload + b"\n\n"
                    sent, quiet_since = payload, time.monotonic()
                elif time.monotonic() - quiet_since > KEEPALIVE_S:
                    yield b": still here\n\n"
                    quiet_since = time.monotonic()
                self._stopping.wait(POLL_S)
        finally:
            with self._streams_lock:
                self._streams -= 1

    def _file(self, environ: dict[str, Any], start_response: StartResponse, rest: str) -> Any:
        file_id = unquote(rest.partition("/")[0])
        slack = self.sandbox.emulator.slack
        record = next((f for f in slack.files() if f["id"] == file_id), None)
        if record is None or not record.get("uploaded"):
            return _json(start_response, 404, {"error": "no such file"})
        content = slack.file_content(file_id)
        mimetype = str(record.get("mimetype") or "application/octet-stream")
        download = "download" in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        disposition = "inline" if mimetype in INLINE_IMAGES and not download else "attachment"
        name = quote(str(record.get("name") or file_id), safe="")
        headers = [("Content-Disposition", f"{disposition}; filename*=UTF-8''{name}")]
        if not mimetype.startswith("image/") and mimetype != "application/octet-stream":
            mimetype += "; charset=utf-8"
        return _send(start_response, 200, content, mimetype, headers)

    # -- actions ------------------------------------------------------------------------------

    def _post(self, environ: dict[str, Any], start_response: StartResponse, path: str) -> Any:
        actions = {
            "/api/line": self._line,
            "/api/click": self._click,
            "/api/submit": self._submit,
            "/api/close-view": self._close_view,
        }
        action = actions.get(path)
        if action is None:
            return _json(start_response, 404, {"error": f"no action {path}"})
        body = _read_json(environ)
        if not isinstance(body, dict):
            return _json(start_response, 400, {"error": "send a JSON object"})
        try:
            status, answer = action(body)
        except ConsoleError as error:
            status, answer = 422, {"error": str(error)}
        except Exception as error:  # one line says what broke; the page goes on
            log.warning("page action %s failed", path, exc_info=True)
            status, answer = 500, {"error": describe_error(error)}
        return _json(start_response, status, answer)

    def _line(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        line = body.get("line")
        if not isinstance(line, str) or "\n" in line or "\r" in line:
            return 400, {"error": "one console line, as text"}
        with self.sandbox.busy:
            prompt = self.sandbox.prompt
            output = self.sandbox.run_line(line)
        return 200, {"prompt": prompt, "output": output}

    def _click(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ts, label = body.get("ts"), body.get("label")
        if not isinstance(ts, str) or not isinstance(label, str) or not label:
            return 400, {"error": "a click names the message (ts) and the button (label)"}
        with self.sandbox.busy:
            output = self.sandbox.click(label, ts)
        return 200, {"output": output}

    def _submit(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        view_id, values = body.get("view_id"), body.get("values")
        if not isinstance(view_id, str) or not isinstance(values, dict):
            return 400, {"error": "a submission names the form (view_id) and its values"}
        typed = {str(k): str(v) for k, v in values.items() if isinstance(v, str)}
        with self.sandbox.busy:
            errors, output = self.sandbox.submit_form(typed, view_id)
        if not errors:
            self.workspace.close_view(view_id)
        return 200, {"errors": errors, "output": output}

    def _close_view(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        view_id = body.get("view_id")
        if not isinstance(view_id, str):
            return 400, {"error": "name the form (view_id)"}
        self.workspace.close_view(view_id)
        return 200, {}


def _read_json(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length <= 0 or length > MAX_BODY:
        return None
    try:
        return json.loads(environ["wsgi.input"].read(length))
    except (ValueError, UnicodeDecodeError):
        return None


def _send(
    start_response: StartResponse,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    start_response(
        f"{status} {REASONS.get(status, 'Error')}",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *(headers or []),
            *SECURITY_HEADERS,
        ],
    )
    return [body]


def _json(start_response: StartResponse, status: int, answer: dict[str, Any]) -> list[bytes]:
    return _send(start_response, status, json.dumps(answer).encode(), "application/json")
