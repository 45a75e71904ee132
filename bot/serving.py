"""`python -m bot serve`: listen first, then load the bot behind the first ack.

A new Cloud Run instance gets its first request as soon as it listens, and Slack wants that
command acked within 3 s. Runback's models, store, templates and Google clients take far
longer than that to import on a slow CPU, so ``serve`` listens with waitress and slack_sdk's
signature check alone and loads everything else right after, in this thread. Until the bot is
ready, the ``Gate`` acks each correctly signed slash command and button click at once (an empty
200, which is what the handlers' own ack is) and hands it to the bot once it is loaded; what the
bot's ack would have said (``/ops help``, a usage note) goes to the command's response_url,
where Slack shows it the same way. Everything else (modals, /alerts, /healthz, unsigned
requests) waits for the bot and gets its real answer.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

from bot.http_server import MAX_SLACK_BODY, make_http_server
from bot.settings import Settings

log = logging.getLogger("runback.serve")

WARM_UP_AFTER_S = 2.0
WARM_UP_QUIET_S = 0.2  # each warm-up step waits for this long without a request being handled
LOAD_TIMEOUT_S = 60.0
OWN_SERVICE_CHECK_S = 10.0  # at most this long before the bot answers; it goes on after that

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Gate:
    """The WSGI app ``serve`` listens with: the bot's own once ``open``, early acks before."""

    def __init__(self, signing_secret: str, load_timeout_s: float = LOAD_TIMEOUT_S) -> None:
        self._verifier = SignatureVerifier(signing_secret or "unset")
        self._load_timeout_s = load_timeout_s
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._app: WSGIApp | None = None
        self._early: list[tuple[dict[str, Any], bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        app = self._app
        if app is not None:
            return app(environ, start_response)
        if environ.get("PATH_INFO") == "/slack/events" and environ.get("REQUEST_METHOD") == "POST":
            body = _read(environ)
            environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
            if self._acks_early(environ, body):
                with self._lock:
                    if self._app is None:
                        self._early.append((environ, body))
                        start_response("200 OK", [("Content-Length", "0")])
                        return [b""]
        if not self._ready.wait(self._load_timeout_s) or self._app is None:
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        return self._app(environ, start_response)

    def _acks_early(self, environ: dict[str, Any], body: bytes) -> bool:
        """A slash command or a button click, signed by Slack (the check Bolt makes)."""
        headers = {
            "x-slack-request-timestamp": environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""),
            "x-slack-signature": environ.get("HTTP_X_SLACK_SIGNATURE", ""),
        }
        if not self._verifier.is_valid_request(body, headers):
            return False
        return _slash_command(body) is not None or _interaction_type(body) == "block_actions"

    def open(self, app: WSGIApp) -> None:
        """The bot is loaded: it answers from now on, starting with what was acked early."""
        with self._lock:
            self._app = app
            early, self._early = self._early, []
        self._ready.set()
        for environ, body in early:
            threading.Thread(target=_replay, args=(app, environ, body), daemon=True).start()

    def fail(self) -> None:
        """The bot could not be loaded: waiting requests get a 503."""
        self._ready.set()


def _read(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(min(length, MAX_SLACK_BODY)) if length > 0 else b""


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(body.decode("utf-8"))
    except UnicodeDecodeError:
        return {}


def _slash_command(body: bytes) -> str | None:
    """The command's response_url, when ``body`` is a slash command."""
    form = _form(body)
    if form.get("command") and form.get("response_url"):
        return form["response_url"][0]
    return None


def _interaction_type(body: bytes) -> str | None:
    payload = _form(body).get("payload")
    try:
        parsed = json.loads(payload[0]) if payload else None
    except ValueError:
        return None
    return parsed.get("type") if isinstance(parsed, dict) else None


def _replay(app: WSGIApp, environ: dict[str, Any], body: bytes) -> None:
    """Run an early-acked request through the bot; a command's ack text goes to response_url."""
    status: list[str] = []
    environ = {**environ, "wsgi.input": io.BytesIO(body)}
    try:
        answer = b"".join(app(environ, lambda code, headers, *_: status.append(code)))
    except Exception:
        log.exception("a request acked while Runback was starting failed")
        return
    response_url = _slash_command(body)
    if not status or not status[0].startswith("200"):
        log.warning("a request acked while Runback was starting was refused: %s", status)
    elif response_url and answer.strip():
        from slack_sdk.webhook import WebhookClient

        # Bolt sends an ack's message as the HTTP answer; Slack shows the same message posted
        # to the command's response_url: https://docs.slack.dev/interactivity/handling-user-interaction
        WebhookClient(response_url, timeout=10).send_dict(json.loads(answer))


def serve(config_path: str | None, upgrade: bool = False) -> int:
    settings = Settings.from_env()
    if upgrade:
        settings = replace(settings, db_upgrade=True)
    missing = settings.missing()
    if missing:
        if _load_config(config_path) is None:  # a broken app.yaml is said first, as before
            return 2
        print(
            f"runback: set {', '.join(missing)} (or run `python -m bot` for the sandbox)",
            file=sys.stderr,
        )
        return 2
    gate = Gate(settings.slack_signing_secret)
    host = os.environ.get("HOST", "0.0.0.0")
    try:
        server = make_http_server(gate, host, settings.port)
    except OSError as error:  # the port taken (EADDRINUSE), a host not on this machine, ...
        reason = error.strerror or str(error)
        print(
            f"runback: cannot listen on {host}:{settings.port}: {reason}; set PORT", file=sys.stderr
        )
        return 2
    stop = threading.Event()
    listener = threading.Thread(target=server.run, name="http", daemon=True)
    listener.start()

    def on_sigterm(*_: Any) -> None:
        stop.set()
        server.close()

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"runback: listening on http://{host}:{server.effective_port}", flush=True)
    runtime = _load(config_path, settings)
    if runtime is None:
        gate.fail()
        server.close()
        return 2
    settle_memory()
    gate.open(runtime.wsgi)
    try:
        _run(runtime, settings, stop, listener)
    except KeyboardInterrupt:
        pass
    finally:
        runtime.engine.shutdown(wait=False)
    return 0


def settle_memory() -> None:
    """Collect once, then freeze what is left: the modules, templates and clients a process
    loads once. Python's cyclic garbage collector then never walks them again. Without this,
    a full collection walked all of them (over 100 ms holding Python's one running thread) and,
    whenever one fell in a burst of commands, every ack waited for it: the bench's /traffic ack
    p99 doubled once the drill branch's templates and tables made the bot bigger."""
    gc.collect()
    gc.freeze()


def _warm_up(runtime: Any) -> None:
    """The warm-up in quiet moments; what it built frozen like the rest (``settle_memory``)."""
    from bot.runtime import WARM_UP_PATIENCE_S  # loaded by now

    runtime.warm_up(quiet_s=WARM_UP_QUIET_S)
    runtime.engine.wait_quiet(WARM_UP_QUIET_S, timeout_s=WARM_UP_PATIENCE_S)
    settle_memory()


def _load_config(config_path: str | None) -> Any:
    from bot.config import ConfigError, load_config

    try:
        return load_config(config_path)
    except ConfigError as error:
        print(f"runback: {error}", file=sys.stderr)
        return None


def _load(config_path: str | None, settings: Settings) -> Any:
    """The whole bot (app.yaml, store, templates, Bolt); None after saying why it cannot run."""
    config = _load_config(config_path)
    if config is None:
        return None
    from bot.runtime import StartupError, build_runtime

    try:
        runtime = build_runtime(config, settings)
    except StartupError as error:
        print(f"runback: {error}", file=sys.stderr)
        return None
    if settings.k_service:
        # While the request that started this instance waits at the Gate: a throttled
        # instance has CPU only then (one Cloud Run read, bounded by the adapter's retries).
        check = threading.Thread(target=runtime.check_own_service, daemon=True)
        check.start()
        check.join(OWN_SERVICE_CHECK_S)
    return runtime


def _run(
    runtime: Any, settings: Settings, stop: threading.Event, listener: threading.Thread
) -> None:
    runtime.engine.start()
    threading.Thread(target=runtime.engine.tick, daemon=True).start()  # resume unfinished work
    # Build Google's clients and compile the templates once the first commands are answered,
    # so that the first rollback or alert after a cold start does not pay for them.
    if settings.warm_up:
        warm_up = threading.Timer(WARM_UP_AFTER_S, _warm_up, args=(runtime,))
        warm_up.daemon = True
        warm_up.start()
    if settings.slack_app_token:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        SocketModeHandler(runtime.bolt_app, settings.slack_app_token).connect()
    while listener.is_alive() and not stop.wait(0.5):
        pass
