"""The bot's HTTP surface: a small WSGI router in front of Bolt.

POST /slack/events        Slack (Bolt verifies the signature)
GET  /healthz             liveness
POST /alerts/monitoring   Cloud Monitoring webhook (?token=RUNBACK_ALERT_TOKEN)
POST /tasks/tick          advance due work (Cloud Scheduler; ?token= or Bearer RUNBACK_TICK_TOKEN)
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

log = logging.getLogger("runback.web")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Hooks:
    """What the non-Slack endpoints call into (kept abstract so web.py stays thin)."""

    alert: Callable[[bytes], tuple[int, dict[str, Any]]]  # body -> (status, answer)
    tick: Callable[[], None]
    alert_token: str | None
    tick_token: str | None


def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    reason = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Payload Too Large",
    }.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


def token_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; an unset expected token never matches (endpoint disabled)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _query_token(environ: dict[str, Any]) -> str | None:
    values = parse_qs(environ.get("QUERY_STRING", "")).get("token")
    return values[0] if values else None


def _bearer(environ: dict[str, Any]) -> str | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None


def _read_body(environ: dict[str, Any]) -> bytes | None:
    """The request body, or None when it is larger than the limit."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    return environ["wsgi.input"].read(length) if length else b""


def make_wsgi_app(bolt_app: App, hooks: Hooks | None = None) -> WSGIApp:
    slack = SlackRequestHandler(bolt_app)

    def alerts(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if hooks is None or not token_matches(_query_token(environ), hooks.alert_token):
            return _json(start_response, 401, {"error": "missing or wrong token"})
        body = _read_body(environ)
        if body is None:
            return _json(
                start_response, 400, {"error": f"payload too large (over {MAX_BODY} bytes)"}
            )
        status, answer = hooks.alert(body)
        return _json(start_response, status, answer)

    def tick(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        given = _bearer(environ) or _query_token(environ)
        if hooks is None or not token_matches(given, hooks.tick_token):
            return _json(start_response, 401, {"error": "missing or wrong token"})
        hooks.tick()
        return _json(start_response, 200, {"status": "ticked"})

    routes: dict[str, tuple[str, WSGIApp]] = {
        "/slack/events": ("POST", slack),
        "/alerts/monitoring": ("POST", alerts),
        "/tasks/tick": ("POST", tick),
    }

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return _json(start_response, 200, {"status": "ok"})
        if path not in routes:
            return _json(start_response, 404, {"error": f"no route for {path}"})
        allowed, handler = routes[path]
        if method != allowed:
            return _json(start_response, 405, {"error": f"{allowed} only"})
        return handler(environ, start_response)

    return app
