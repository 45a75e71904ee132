"""The ServiceConfigReader port: a service's own ``GET /config/flags``, over HTTP.

Like the health probe (bot/gcp/probe.py), a service that requires authentication gets an ID
token for its own URL, and Google's front-end 404 or a 403 are configuration problems rather
than answers. The JSON shape is checked by bot/policy/flags.py (``parse_answer``).
"""

from __future__ import annotations

import json

from bot.gcp.probe import IdTokenHttp, front_end_refusal, is_front_end_404
from bot.policy.flags import parse_answer
from bot.ports import FlagsAnswer

FLAGS_PATH = "/config/flags"
MAX_BODY_BYTES = 64 * 1024  # a flags answer is small; never read an unbounded body
DETAIL_CHARS = 200


class HttpServiceConfig(IdTokenHttp):
    """ServiceConfigReader over ``requests``; never raises."""

    USER_AGENT = "runback-config"

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


def answer_of(status: int, text: str) -> FlagsAnswer:
    """An HTTP answer as a FlagsAnswer (pure)."""
    detail = text[:DETAIL_CHARS]
    if is_front_end_404(status, text):
        return FlagsAnswer(None, status, front_end_refusal(FLAGS_PATH), detail)
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
