"""The AuditSink port over Cloud Logging (``google-cloud-logging``, REST).

Each AuditEvent becomes one structured entry in the ``runback-audit`` log (resource
``global``). Writes never raise into the caller: transient failures are retried a few times,
then a warning goes to Python logging. Every HTTP request is capped at ``request_timeout_s``.
Google libraries are imported on first use.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any, TypeVar

from bot.gcp.errors import api_error_reason
from bot.ports import AuditEvent

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.logging import Client

T = TypeVar("T")
MAX_PAGE_SIZE = 1000  # entries.list: pageSize "must not exceed 1000"
_log = logging.getLogger(__name__)

SEVERITY_BY_OUTCOME = {"ok": "NOTICE", "refused": "WARNING", "failed": "ERROR"}
DEFAULT_SEVERITY = "INFO"


class LogsUnavailable(Exception):
    """Reading Cloud Logging failed after bounded retries; ``reason`` as bot.gcp.errors names it
    (``permission_denied``, ``unavailable``, ...)."""

    def __init__(self, message: str, reason: str = "api_error") -> None:
        super().__init__(message)
        self.reason = reason


class CloudLoggingAudit:
    def __init__(
        self,
        project: str,
        emulator_host: str | None = None,
        log_name: str = "runback-audit",
        attempts: int = 3,
        backoff_s: float = 0.2,
        request_timeout_s: float = 5.0,
    ) -> None:
        self._project = project
        self._emulator_host = emulator_host
        self._log_name = log_name
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._request_timeout_s = request_timeout_s
        self._lock = threading.Lock()
        self._client: Client | None = None

    @property
    def log_path(self) -> str:
        return f"projects/{self._project}/logs/{self._log_name}"

    def write(self, event: AuditEvent) -> None:
        """Write one audit entry; failures end as a warning, never as an exception."""
        entry = audit_entry(event, self.log_path)
        try:
            self._with_retries(lambda: self._get_client().logging_api.write_entries([entry]))
        except Exception as error:  # the audit trail must not break the workflow it records
            _log.warning(
                "Cloud Logging audit write failed after %d attempt(s): %s (action=%s service=%s)",
                self._attempts,
                error,
                event.action,
                event.service,
            )

    def list_entries(
        self, filter_: str = "", max_results: int = 50, project: str | None = None
    ) -> list[dict[str, Any]]:
        """Entries of ``project`` (default: this client's) matching ``filter_`` (Logging query
        language), newest first. A service's logs live in the service's own project.

        Without a ``timestamp`` term the library restricts the query to the last 24 hours.
        Raises LogsUnavailable when Cloud Logging cannot be read.
        """
        from google.cloud.logging import DESCENDING

        resources = [f"projects/{project or self._project}"]

        def fetch() -> list[dict[str, Any]]:
            found = self._get_client().list_entries(
                resource_names=resources,
                filter_=filter_ or None,
                order_by=DESCENDING,
                max_results=max_results,
                # One call: the server's default page is 50 entries, and entries.list is
                # quota'd per project per minute (https://cloud.google.com/logging/quotas).
                page_size=max(1, min(max_results, MAX_PAGE_SIZE)),
            )
            return [entry.to_api_repr() for entry in found]

        try:
            return self._with_retries(fetch)
        except Exception as error:
            reason = "unavailable" if _is_transient(error) else api_error_reason(error)
            raise LogsUnavailable(f"{type(error).__name__}: {error}", reason) from error

    # -- plumbing -----------------------------------------------------------------------------

    def _with_retries(self, fn: Callable[[], T]) -> T:
        for attempt in range(self._attempts):
            try:
                return fn()
            except Exception as error:
                if attempt + 1 >= self._attempts or not _is_transient(error):
                    raise
                time.sleep(self._backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    @property
    def ready(self) -> bool:
        """Whether the client library is loaded and its client built (``warm_up`` does it)."""
        return self._client is not None

    def warm_up(self) -> None:
        """Import the library and build the client now, off the first request's path."""
        self._get_client()

    def _get_client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Client:
        from google.cloud import logging as cloud_logging

        credentials = self._credentials(cloud_logging.Client.SCOPE)
        options = {"api_endpoint": f"http://{self._emulator_host}"} if self._emulator_host else None
        return cloud_logging.Client(
            project=self._project,
            credentials=credentials,
            _http=_capped_session(credentials, self._request_timeout_s),
            _use_grpc=False,
            client_options=options,
        )

    def _credentials(self, scopes: tuple[str, ...]) -> Credentials:
        if self._emulator_host:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        import google.auth

        credentials, _ = google.auth.default(scopes=scopes)
        return credentials


def audit_entry(event: AuditEvent, log_path: str) -> dict[str, Any]:
    """The LogEntry (REST JSON) for one audit event."""
    payload = {
        "service": event.service,
        "revision": event.revision,
        "actor": event.actor,
        "action": event.action,
        "outcome": event.outcome,
        "operation_id": event.operation_id,
        "detail": json.loads(json.dumps(event.detail, default=str)),
    }
    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
    return {
        "logName": log_path,
        "resource": {"type": "global", "labels": {}},
        "severity": SEVERITY_BY_OUTCOME.get(event.outcome, DEFAULT_SEVERITY),
        "timestamp": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "labels": {"app": "runback", "action": event.action},
        "jsonPayload": payload,
    }


def _is_transient(error: Exception) -> bool:
    import requests
    from google.api_core import exceptions

    transient = (
        exceptions.ServerError,
        exceptions.TooManyRequests,
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
    )
    return isinstance(error, transient)


def _capped_session(credentials: Credentials, timeout_s: float) -> Any:
    """An authorized requests session whose every request times out after ``timeout_s``."""
    from google.auth.transport.requests import AuthorizedSession

    class CappedSession(AuthorizedSession):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = timeout_s
            return super().request(*args, **kwargs)

    return CappedSession(credentials)
