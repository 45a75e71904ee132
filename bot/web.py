"""The bot's HTTP surface: a small WSGI router in front of Bolt.

POST /slack/events        Slack (Bolt verifies the signature)
GET  /health, /healthz    liveness (/health for checks from outside: Google reserves /healthz on
                          *.run.app URLs; Cloud Run's own probes reach either)
POST /alerts/monitoring   Cloud Monitoring webhook (?token=RUNBACK_ALERT_TOKEN)
POST /tasks/tick          do due work inside the request (Cloud Scheduler; ?token= or Bearer
                          RUNBACK_TICK_TOKEN): the CPU may be gone once it is answered
POST /ci/releases         CI registers a release candidate (Bearer RUNBACK_CI_TOKEN)

In front of Bolt, /slack/events checks what Bolt would trip over: size (413 before reading),
signature and timestamp (401), a body that is not UTF-8 or not Slack's shape (400), and a
signed request seen before (a replay: an empty 200, and nothing happens).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

from bot.database import UNAVAILABLE
from bot.http_server import MAX_SLACK_BODY, BoundedServer, make_http_server

log = logging.getLogger("runback.web")
__all__ = ["MAX_SLACK_BODY", "BoundedServer", "Hooks", "make_http_server", "make_wsgi_app"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
MAX_BODY = 64 * 1024
# Slack refuses requests whose timestamp is more than 5 minutes off; so do Bolt and this guard:
# https://docs.slack.dev/authentication/verifying-requests-from-slack/
# A second copy of one signature is always a replay: Slack retries only Events API deliveries
# (X-Slack-Retry-Num, each signed anew: https://api.slack.com/apis/events-api#retries), and
# Runback subscribes to no events; slash commands, clicks and forms are never retried.
SLACK_WINDOW_S = 5 * 60


@dataclass(frozen=True)
class Hooks:
    """What the non-Slack endpoints call into (kept abstract so web.py stays thin)."""

    alert: Callable[[bytes], tuple[int, dict[str, Any]]]  # body -> (status, answer)
    tick: Callable[[], bool | None]  # True/None: all due work done; False: the deadline came
    alert_token: str | None
    tick_token: str | None
    # True the first time a signed Slack request (by its key) is seen before ``expires``;
    # the flag: the request may change something (its key must outlive a restart).
    first_sighting: Callable[[str, datetime, bool], bool] | None = None
    # None when the bot can do its work, else what is wrong (``/healthz`` says it, non-200).
    health: Callable[[], str | None] | None = None
    ci_release: Callable[[bytes], tuple[int, dict[str, Any]]] | None = None  # body -> answer
    ci_token: str | None = None
    ci_max_body: int = MAX_BODY
    # Held while a request from Slack is being answered (the engine counts it as activity, so
    # that the start-up warm-up waits for a quiet moment rather than slow an ack).
    activity: Callable[[], AbstractContextManager[None]] | None = None


def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    reason = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        201: "Created",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Payload Too Large",
        415: "Unsupported Media Type",
        422: "Unprocessable Entity",
        503: "Service Unavailable",
    }.get(status, "Error")
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    if status == 503:
        headers.append(("Retry-After", "30"))
    start_response(f"{status} {reason}", headers)
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


def _read_body(environ: dict[str, Any], limit: int = MAX_BODY) -> bytes | None:
    """The request body, or None when it is larger than the limit: refused on its declared
    length before reading, and never read past the limit whatever the length says."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return None
    body = environ["wsgi.input"].read(min(length, limit + 1)) if length > 0 else b""
    return None if len(body) > limit else body


def _signed_request_key(environ: dict[str, Any], body: bytes, verifier: SignatureVerifier) -> str:
    """A replay key for a request Slack signed now, or "" when it is unsigned, stale or forged."""
    stamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
    signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
    if not stamp.isdigit() or not signature or len(stamp) > 12:
        return ""
    if abs(time.time() - int(stamp)) > SLACK_WINDOW_S:
        return ""
    expected = verifier.generate_signature(timestamp=stamp, body=body) or ""
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return ""
    return hashlib.sha256(f"{signature}:{stamp}".encode()).hexdigest()


def _interaction_is_usable(payload: Any) -> bool:
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return False
    if payload["type"] != "block_actions":
        return True
    actions = payload.get("actions")
    return isinstance(actions, list) and bool(actions) and all(isinstance(a, dict) for a in actions)


# ``/ops`` subcommands that only read: answering one twice changes nothing.
READ_ONLY_OPS = frozenset(
    {"", "help", "whoami", "incidents", "backups", "check", "drills", "migration-check"}
)


def _content_type(environ: dict[str, Any]) -> str:
    return str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()


def url_encoded_form(environ: dict[str, Any], text: str) -> dict[str, list[str]] | None:
    """The fields of a form-encoded body (None for any other body): parsed once per request,
    for every check here (each parse is ~30 µs of an ack's CPU)."""
    if _content_type(environ) != "application/x-www-form-urlencoded":
        return None
    return parse_qs(text)


def changes_state(
    environ: dict[str, Any], text: str, form: dict[str, list[str]] | None = None
) -> bool:
    """Whether a signed request may change something (start, decide, stop): every click and
    form, and every command but the reads. Only these must be remembered across restarts."""
    form = url_encoded_form(environ, text) if form is None else form
    if form is None:
        return True
    command = (form.get("command") or [""])[0]
    words = (form.get("text") or [""])[0].split()
    if command == "/traffic":
        return False
    if command == "/flag":
        return len(words) > 1  # ``/flag SERVICE`` lists the flags
    if command == "/ops":
        return (words[0].lower() if words else "") not in READ_ONLY_OPS
    return True


def _slack_shape_problem(
    environ: dict[str, Any], text: str, form: dict[str, list[str]] | None
) -> str:
    """What makes a signed body unusable for Bolt ("" when nothing does)."""
    try:
        if _content_type(environ) == "application/json":
            return "" if isinstance(json.loads(text), dict) else "a JSON object is expected"
        if form is None:
            return "unsupported content type"
        if "payload" in form and not _interaction_is_usable(json.loads(form["payload"][0])):
            return "the interaction payload is not usable"
    except (ValueError, RecursionError):
        return "the body is malformed"
    return ""


def slack_guard(
    slack: WSGIApp,
    signing_secret: str,
    first_sighting: Callable[[str, datetime, bool], bool] | None,
) -> WSGIApp:
    """Everything Bolt should never see: oversized, unsigned, malformed or replayed requests."""
    verifier = SignatureVerifier(signing_secret or "unset")

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ, MAX_SLACK_BODY)
        if body is None:
            return _json(start_response, 413, {"error": "payload too large"})
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _json(start_response, 400, {"error": "the body is not UTF-8"})
        key = _signed_request_key(environ, body, verifier) if signing_secret else ""
        if not key:
            return _json(start_response, 401, {"error": "invalid request"})
        form = url_encoded_form(environ, text)
        problem = _slack_shape_problem(environ, text, form)
        if problem:
            return _json(start_response, 400, {"error": problem})
        if first_sighting is not None:
            expires = datetime.fromtimestamp(
                int(environ["HTTP_X_SLACK_REQUEST_TIMESTAMP"]) + 2 * SLACK_WINDOW_S, UTC
            )
            try:
                first = first_sighting(key, expires, changes_state(environ, text, form))
            except UNAVAILABLE:
                log.exception("the database refused a Slack request's replay key")
                return _json(start_response, 503, {"error": "database unavailable"})
            if not first:
                log.warning("a signed Slack request was replayed; ignored")
                start_response("200 OK", [("Content-Length", "0")])
                return [b""]
        environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        return slack(environ, start_response)

    return guarded


def make_wsgi_app(bolt_app: App, hooks: Hooks | None = None, signing_secret: str = "") -> WSGIApp:
    slack = slack_guard(
        SlackRequestHandler(bolt_app),
        signing_secret,
        hooks.first_sighting if hooks is not None else None,
    )

    def alerts(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if hooks is None or not token_matches(_query_token(environ), hooks.alert_token):
            return _json(start_response, 401, {"error": "missing or wrong token"})
        body = _read_body(environ)
        if body is None:
            return _json(
                start_response, 400, {"error": f"payload too large (over {MAX_BODY} bytes)"}
            )
        try:
            status, answer = hooks.alert(body)
        except UNAVAILABLE:
            log.exception("the database refused an alert; Cloud Monitoring will retry")
            return _json(start_response, 503, {"error": "database unavailable; retry later"})
        return _json(start_response, status, answer)

    def tick(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        given = _bearer(environ) or _query_token(environ)
        if hooks is None or not token_matches(given, hooks.tick_token):
            return _json(start_response, 401, {"error": "missing or wrong token"})
        try:
            settled = hooks.tick()
        except UNAVAILABLE:
            log.exception("the database refused a tick")
            return _json(start_response, 503, {"error": "database unavailable; retry later"})
        if settled is False:  # more to do than the deadline allowed: the next tick goes on
            return _json(start_response, 200, {"status": "ticked", "more": True})
        return _json(start_response, 200, {"status": "ticked"})

    def ci_releases(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Bearer token only: a query-string token would end up in request logs."""
        if hooks is None or hooks.ci_release is None:
            return _json(start_response, 401, {"error": "missing or wrong token"})
        if not token_matches(_bearer(environ), hooks.ci_token):
            return _json(start_response, 401, {"error": "missing or wrong token"})
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _json(start_response, 415, {"error": "Content-Type must be application/json"})
        body = _read_body(environ, hooks.ci_max_body)
        if body is None:
            error = f"payload too large (over {hooks.ci_max_body} bytes)"
            return _json(start_response, 413, {"error": error})
        try:
            status, answer = hooks.ci_release(body)
        except UNAVAILABLE:
            log.exception("the database refused a CI release")
            return _json(start_response, 503, {"error": "database unavailable; retry later"})
        return _json(start_response, status, answer)

    def healthz(start_response: StartResponse) -> Iterable[bytes]:
        problem = hooks.health() if hooks is not None and hooks.health is not None else None
        if problem:
            return _json(start_response, 503, {"status": "unavailable", "problem": problem})
        return _json(start_response, 200, {"status": "ok"})

    routes: dict[str, tuple[str, WSGIApp]] = {
        "/slack/events": ("POST", slack),
        "/alerts/monitoring": ("POST", alerts),
        "/tasks/tick": ("POST", tick),
        "/ci/releases": ("POST", ci_releases),
    }

    def slack_answered(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if hooks is None or hooks.activity is None:
            return slack(environ, start_response)
        with hooks.activity():
            return slack(environ, start_response)

    routes["/slack/events"] = ("POST", slack_answered)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path in ("/health", "/healthz"):
            return healthz(start_response)
        if path not in routes:
            return _json(start_response, 404, {"error": f"no route for {path}"})
        allowed, handler = routes[path]
        if method != allowed:
            return _json(start_response, 405, {"error": f"{allowed} only"})
        return handler(environ, start_response)

    return app
