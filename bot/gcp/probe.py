"""The Probe port: one HTTP GET (e.g. a revision's health path) that never raises.

Two answers are configuration problems, not health answers:
- Google's front end answers some paths itself on ``*.run.app`` URLs, exactly ``/healthz`` among
  them, with its own HTML 404 ("Error 404 (Not Found)!!1"), before the container sees the
  request (https://cloud.google.com/run/docs/known-issues, "Reserved URL paths";
  funkyhq/funky#30, checkmarble/marble-backend#977). That is ``problem="reserved_path"``. The
  same page for any other path means the service's ingress keeps Runback out (internal, or
  internal and Cloud Load Balancing): ``problem="ingress_internal"``.
- A 403 from a service that requires authentication means Runback's identity lacks
  ``roles/run.invoker``: ``problem="invoker_denied"``.

For a service that requires authentication the probe sends ``Authorization: Bearer ID_TOKEN``
with the service URL as audience. The token comes from ``id_token_source``: by default
``fetch_google_id_token`` (the metadata server on Cloud Run, a service account key, or gcloud's
ADC of an impersonated service account on a laptop); the sandbox passes the emulator's token
endpoint instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from bot.gcp.emulator_host import emulator_id_tokens, emulator_url_rewrite
from bot.policy.platform import health_path_reserved
from bot.ports import ProbeResult

if TYPE_CHECKING:
    import requests

MAX_BODY_BYTES = 4096  # read at most this much of any answer
DETAIL_CHARS = 200  # and keep this much of it as the result's detail
TOKEN_REUSE_S = 45 * 60  # Google ID tokens live one hour; fetch a new one well before that
# Markers of Google's own error page (its <title>); a container's 404 does not carry them.
GOOGLE_404_MARKERS = ("Error 404 (Not Found)!!1",)

IdTokenSource = Callable[[str], str]  # audience -> ID token


def fetch_google_id_token(audience: str) -> str:
    """An ID token for ``audience`` from Application Default Credentials.

    ``fetch_id_token`` reads only ``GOOGLE_APPLICATION_CREDENTIALS`` (a service account key) and
    the metadata server (Cloud Run); gcloud's ADC file is not among them. When ADC is an
    impersonated service account (``gcloud auth application-default login
    --impersonate-service-account``, the laptop step of docs/deploying.md), the token comes from IAM
    Credentials' generateIdToken as that service account instead."""
    import google.auth.transport.requests
    from google.oauth2 import id_token

    request = google.auth.transport.requests.Request()
    credentials = impersonated_id_token_credentials(audience)
    if credentials is None:
        return str(id_token.fetch_id_token(request, audience))
    credentials.refresh(request)
    return str(credentials.token)


def impersonated_id_token_credentials(audience: str) -> Any:
    """ID-token credentials for ``audience`` when ADC is an impersonated service account
    (``type: impersonated_service_account``); None otherwise (fetch_id_token's cases)."""
    import google.auth
    from google.auth import exceptions, impersonated_credentials

    try:
        credentials, _ = google.auth.default()
    except exceptions.DefaultCredentialsError:
        return None
    if not isinstance(credentials, impersonated_credentials.Credentials):
        return None
    return impersonated_credentials.IDTokenCredentials(
        credentials, target_audience=audience, include_email=True
    )


class IdTokenHttp:
    """A ``requests`` session for Runback's calls to the services it manages: a Google ID token
    for an audience when the service is IAM-protected (each token reused for TOKEN_REUSE_S), and
    URLs rewritten in the sandbox."""

    USER_AGENT = "runback"

    def __init__(
        self,
        session: requests.Session | None = None,
        user_agent: str | None = None,
        id_token_source: IdTokenSource | None = None,
        rewrite_url: Callable[[str], str] | None = None,
    ) -> None:
        if session is None:
            import requests

            session = requests.Session()
        session.headers["User-Agent"] = user_agent or self.USER_AGENT
        self._session = session
        self._id_token_source = id_token_source or fetch_google_id_token
        self._rewrite_url = rewrite_url or (lambda url: url)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_emulator(cls, emulator_host: str | None = "") -> Self:
        """Google's ID tokens and real URLs; with ``emulator_host``, the emulator's tokens and
        its URLs for the services."""
        if not emulator_host:
            return cls()  # ID tokens from google.oauth2.id_token.fetch_id_token
        return cls(
            id_token_source=emulator_id_tokens(emulator_host),
            rewrite_url=emulator_url_rewrite(emulator_host),
        )

    def _token(self, audience: str) -> str:
        with self._lock:
            cached = self._tokens.get(audience)
            if cached and time.monotonic() - cached[1] < TOKEN_REUSE_S:
                return cached[0]
        token = self._id_token_source(audience)
        with self._lock:
            self._tokens[audience] = (token, time.monotonic())
        return token


class HttpProbe(IdTokenHttp):
    USER_AGENT = "runback-probe"

    def get(self, url: str, timeout_s: float, audience: str | None = None) -> ProbeResult:
        """GET ``url``; ok means a 2xx answer. Failures come back as ok=False, status=None."""
        import requests

        started = time.monotonic()
        headers = {}
        if audience:
            try:
                headers["Authorization"] = f"Bearer {self._token(audience)}"
            except Exception as error:  # no credentials, metadata server unreachable, ...
                detail = f"no ID token for {audience}: {type(error).__name__}: {error}"
                return _failed(detail[:DETAIL_CHARS], started, problem="no_id_token")
        try:
            with self._session.get(
                self._rewrite_url(url),
                timeout=timeout_s,
                stream=True,
                allow_redirects=False,
                headers=headers,
            ) as response:
                body = _read_head(response)
                status = response.status_code
        except requests.exceptions.Timeout:
            return _failed("timeout", started)
        except requests.exceptions.ConnectionError as error:
            return _failed(_connection_detail(error), started)
        except Exception as error:  # a probe reports, it never raises
            return _failed(f"error: {type(error).__name__}: {error}"[:DETAIL_CHARS], started)
        text = body.decode("utf-8", errors="replace")
        return ProbeResult(
            ok=200 <= status < 300,
            status=status,
            detail=text[:DETAIL_CHARS],
            elapsed_ms=_elapsed_ms(started),
            problem=_problem(status, text, urlsplit(url).path),
        )


def front_end_refusal(path: str) -> str:
    """Why Google's front end answered a path itself: a path it reserves (``/healthz``), or,
    for any other path, the service's ingress (internal, or internal and Cloud Load
    Balancing): a request from outside the VPC never reaches the service
    (https://cloud.google.com/run/docs/securing/ingress) and gets the same HTML 404."""
    return "reserved_path" if health_path_reserved(path) else "ingress_internal"


def is_front_end_404(status: int | None, body: str) -> bool:
    """Google's front end answered (its HTML 404 page), not the container."""
    return status == 404 and any(marker in body for marker in GOOGLE_404_MARKERS)


def _problem(status: int, body: str, path: str) -> str:
    if is_front_end_404(status, body):
        return front_end_refusal(path)
    if status == 403:
        return "invoker_denied"
    return ""


def _read_head(response: requests.Response) -> bytes:
    body = b""
    for chunk in response.iter_content(chunk_size=1024):
        body += chunk
        if len(body) >= MAX_BODY_BYTES:
            break
    return body[:MAX_BODY_BYTES]


def _failed(detail: str, started: float, problem: str = "") -> ProbeResult:
    return ProbeResult(
        ok=False, status=None, detail=detail, elapsed_ms=_elapsed_ms(started), problem=problem
    )


def _connection_detail(error: Exception) -> str:
    text = str(error)
    if "timed out" in text.lower():
        return "timeout"
    if "refused" in text.lower():
        return "connection refused"
    return f"connection error: {text}"[:DETAIL_CHARS]


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
