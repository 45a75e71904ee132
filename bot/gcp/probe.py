"""The Probe port: one HTTP GET (e.g. a revision's /healthz) that never raises."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bot.ports import ProbeResult

if TYPE_CHECKING:
    import requests

MAX_BODY_BYTES = 4096  # read at most this much of any answer
DETAIL_CHARS = 200  # and keep this much of it as the result's detail


class HttpProbe:
    def __init__(
        self, session: requests.Session | None = None, user_agent: str = "runback-probe"
    ) -> None:
        if session is None:
            import requests

            session = requests.Session()
        session.headers["User-Agent"] = user_agent
        self._session = session

    def get(self, url: str, timeout_s: float) -> ProbeResult:
        """GET ``url``; ok means a 2xx answer. Failures come back as ok=False, status=None."""
        import requests

        started = time.monotonic()
        try:
            with self._session.get(
                url, timeout=timeout_s, stream=True, allow_redirects=False
            ) as response:
                body = _read_head(response)
                status = response.status_code
        except requests.exceptions.Timeout:
            return _failed("timeout", started)
        except requests.exceptions.ConnectionError as error:
            return _failed(_connection_detail(error), started)
        except Exception as error:  # a probe reports, it never raises
            return _failed(f"error: {type(error).__name__}: {error}"[:DETAIL_CHARS], started)
        detail = body.decode("utf-8", errors="replace")[:DETAIL_CHARS]
        return ProbeResult(
            ok=200 <= status < 300, status=status, detail=detail, elapsed_ms=_elapsed_ms(started)
        )


def _read_head(response: requests.Response) -> bytes:
    body = b""
    for chunk in response.iter_content(chunk_size=1024):
        body += chunk
        if len(body) >= MAX_BODY_BYTES:
            break
    return body[:MAX_BODY_BYTES]


def _failed(detail: str, started: float) -> ProbeResult:
    return ProbeResult(ok=False, status=None, detail=detail, elapsed_ms=_elapsed_ms(started))


def _connection_detail(error: Exception) -> str:
    text = str(error)
    if "timed out" in text.lower():
        return "timeout"
    if "refused" in text.lower():
        return "connection refused"
    return f"connection error: {text}"[:DETAIL_CHARS]


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
