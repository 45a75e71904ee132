"""The ServiceConfigReader port: a service's own ``GET /config/flags``, over HTTP.

Like the health probe (bot/gcp/probe.py), a service that requires authentication gets an ID
token for its own URL, and Google's front-end 404 or a 403 are configuration problems rather
than answers. The JSON shape is checked by bot/policy/flags.py (``parse_answer``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.gcp.probe import (
    TOKEN_REUSE_S,
    IdTokenSource,
    fetch_google_id_token,
    is_front_end_404,
)
from bot.policy.flags import parse_answer
from bot.ports import FlagsAnswer

if TYPE_CHECKING:
    import requests

FLAGS_PATH = "/config/flags"
MAX_BODY_BYTES = 64 * 1024  # a flags answer is small; never read an unbounded body
DETAIL_CHARS = 200


class HttpServiceConfig:
    """ServiceConfigReader over ``requests``; never raises."""

    def __init__(
        self,
        session: requests.Session | None = None,
        user_agent: str = "runback-config",
        id_token_source: IdTokenSource | None = None,
        rewrite_url: Callable[[str], str] | None = None,
    ) -> None:
        if session is None:
            import requests

            session = requests.Session()
        session.headers["User-Agent"] = user_agent
        self._session = session
        self._id_token_source = id_token_source or fetch_google_id_token
        self._rewrite_url = rewrite_url or (lambda url: url)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def flags(self, url: str, timeout_s: float, audience: str | None = None) -> FlagsAnswer:
        import requests

        headers = {"Accept": "application/json"}
        if audience:
            try:
                headers["Authorization"] = f"Bearer {self._token(audience)}"
            except Exception as error:  # no credentials, metadata server unreachable, ...
                detail = f"no ID token for {audience}: {type(error).__name__}"
                return FlagsAnswer(None, problem="no_id_token", detail=detail[:DETAIL_CHARS])
        target = self._rewrite_url(url.rstrip("/") + FLAGS_PATH)
        try:
            with self._session.get(
                target, timeout=timeout_s, stream=True, allow_redirects=False, headers=headers
            ) as response:
                body = response.raw.read(MAX_BODY_BYTES, decode_content=True)
                status = response.status_code
        except requests.exceptions.Timeout:
            return FlagsAnswer(None, problem="unreachable", detail="timeout")
        except requests.exceptions.RequestException as error:
            return FlagsAnswer(None, problem="unreachable", detail=str(error)[:DETAIL_CHARS])
        return answer_of(status, body.decode("utf-8", errors="replace"))

    def _token(self, audience: str) -> str:
        with self._lock:
            cached = self._tokens.get(audience)
            if cached and time.monotonic() - cached[1] < TOKEN_REUSE_S:
                return cached[0]
        token = self._id_token_source(audience)
        with self._lock:
            self._tokens[audience] = (token, time.monotonic())
        return token


def answer_of(status: int, text: str) -> FlagsAnswer:
    """An HTTP answer as a FlagsAnswer (pure)."""
    detail = text[:DETAIL_CHARS]
    if is_front_end_404(status, text):
        return FlagsAnswer(None, status, "reserved_path", detail)
    if status == 403:
        return FlagsAnswer(None, status, "invoker_denied", detail)
    if not 200 <= status < 300:
        return FlagsAnswer(None, status, "http_status", detail)
    try:
        body = json.loads(text)
    except ValueError:
        return FlagsAnswer(None, status, "not_json", detail)
    flags = parse_answer(body)
    if flags is None:
        return FlagsAnswer(None, status, "bad_shape", detail)
    return FlagsAnswer(flags, status)
