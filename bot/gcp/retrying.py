"""Bounded retries of Google API calls, shared by the Cloud SQL and Secret Manager adapters.

A call is retried with exponential backoff on transient failures (503, 429, 500, 504, request
timeouts, connection errors) for at most ``deadline_s``. A POST that creates something is
retried only when Google says it did not act (503 UNAVAILABLE, 429): after a timeout it may
have, and the caller looks before trying again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bot.gcp.errors import api_error_reason, describe

if TYPE_CHECKING:
    from google.api_core.retry import Retry

T = TypeVar("T")
MAX_BACKOFF_S = 2.0


class RetryingAdapter:
    """What every adapter over a Google client keeps: where to connect (the emulator, or
    Google), its retry budget, and a lock for its lazily built clients."""

    def __init__(
        self,
        emulator_host: str | None,
        retry_deadline_s: float = 20.0,
        initial_backoff_s: float = 0.2,
        attempt_timeout_s: float = 10.0,
    ) -> None:
        self._emulator_host = emulator_host
        self._deadline_s = retry_deadline_s
        self._initial_s = initial_backoff_s
        self._timeout_s = min(attempt_timeout_s, retry_deadline_s)
        self._lock = threading.Lock()


def transient_retry(initial_s: float, deadline_s: float, creates: bool = False) -> Retry:
    import requests
    from google.api_core import exceptions
    from google.api_core.retry import Retry, if_exception_type

    kinds: tuple[type[Exception], ...] = (exceptions.ServiceUnavailable, exceptions.TooManyRequests)
    if not creates:
        kinds += (
            exceptions.InternalServerError,
            exceptions.GatewayTimeout,
            exceptions.DeadlineExceeded,
            requests.exceptions.Timeout,
            requests.exceptions.ConnectionError,
        )
    return Retry(
        predicate=if_exception_type(*kinds),
        initial=initial_s,
        maximum=MAX_BACKOFF_S,
        multiplier=2.0,
        timeout=deadline_s,
    )


def call_google(fn: Callable[[], T], error: Callable[[str, str], Exception]) -> T:
    """Run one (already retried) client call; a failure becomes ``error(reason, detail)``."""
    import requests
    from google.api_core import exceptions

    try:
        return fn()
    except exceptions.RetryError as failure:
        cause = failure.cause if failure.cause is not None else failure
        raise error("unavailable", describe(cause)) from failure
    except exceptions.Conflict as failure:
        reason = "already_exists" if "ALREADY_EXISTS" in _status(failure) else "conflict"
        raise error(reason, failure.message) from failure
    except exceptions.GoogleAPICallError as failure:
        raise error(api_error_reason(failure), describe(failure)) from failure
    except requests.exceptions.RequestException as failure:
        raise error("unavailable", describe(failure)) from failure


def emulator_options(emulator_host: str | None) -> dict[str, Any]:
    """REST transport; with an emulator, anonymous credentials and its endpoint."""
    options: dict[str, Any] = {"transport": "rest"}
    if emulator_host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        options["credentials"] = AnonymousCredentials()
        options["client_options"] = ClientOptions(api_endpoint=f"http://{emulator_host}")
    return options


def _status(failure: Any) -> str:
    try:
        status = failure.response.json()["error"]["status"]
    except (AttributeError, KeyError, TypeError, ValueError):
        return ""
    return status if isinstance(status, str) else ""
