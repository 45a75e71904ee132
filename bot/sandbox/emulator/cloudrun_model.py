"""The Cloud Run emulator's vocabulary: constants, errors, the dataclasses its layers share, and
small helpers for names, conditions and replies (see ``cloudrun.py`` for the semantics).

Replies are built from the ``google-cloud-run`` (run_v2) library's own message types.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from google.cloud import run_v2

from bot.sandbox.emulator.http import (
    HttpError,
    Request,
    Response,
    google_error,
    json_response,
    text_response,
)

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
UNSPECIFIED = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED
State = run_v2.Condition.State

NOT_FOUND = 5
# A revision without one runs as the project's default compute service account (run_secrets.py).
DEFAULT_SERVICE_ACCOUNT = "100000000001-compute@developer.gserviceaccount.com"
DEFAULT_PAGE_SIZE = 100
# What Cloud Run says when a new revision's container does not start (its Ready condition).
REVISION_START_FAILED = (
    "Revision '{revision}' is not ready and cannot serve traffic. The user-provided container "
    "failed to start and listen on the port defined provided by the PORT=8080 environment "
    "variable within the allocated timeout."
)

METRICS_HISTORY_S = 600.0  # /metrics counters start with this much synthetic history


class NotFound(HttpError, KeyError):
    """An unknown service or revision: a 404 on the HTTP API, a KeyError in Python."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)

    def __str__(self) -> str:
        return self.message


class AlreadyExists(HttpError):
    """A 409 whose google.rpc status is ALREADY_EXISTS (a bare 409 here reads ABORTED)."""

    def __init__(self, message: str) -> None:
        super().__init__(409, message)

    def response(self) -> Response:
        answer = google_error(409, self.message)
        body = json.loads(answer.body)
        body["error"]["status"] = "ALREADY_EXISTS"
        return json_response(body, 409)


class StatusError(HttpError):
    """An error whose google.rpc status is not the one its HTTP code implies."""

    def __init__(self, status: int, rpc_status: str, message: str) -> None:
        super().__init__(status, message)
        self.rpc_status = rpc_status

    def response(self) -> Response:
        body = json.loads(google_error(self.status, self.message).body)
        body["error"]["status"] = self.rpc_status
        return json_response(body, self.status)


@dataclass
class Behaviour:
    """How a revision's own endpoints answer."""

    healthz_status: int = 200
    error_rate: float = 0.0
    p95_ms: float = 120.0
    rps: float = 20.0


@dataclass(frozen=True)
class ServiceSnapshot:
    """What a service serves from ``at`` (clock seconds) on, sent to listeners on each change.

    ``service`` is the full name; ``shares`` maps revision -> percent actually served;
    ``behaviours`` holds a copy for every revision of the service. ``replaced``: the service
    was (re)created, forget its earlier history. ``service == ""`` with ``replaced``: every
    service was forgotten (reset).
    """

    at: float
    service: str
    shares: dict[str, int]
    behaviours: dict[str, Behaviour]
    replaced: bool = False


SnapshotListener = Callable[[ServiceSnapshot], None]


@dataclass
class _Counters:
    """Request counts folded up to ``since``; they keep growing from there at the behaviour."""

    ok: float = 0.0
    errors: float = 0.0
    since: float = field(default_factory=lambda: time.time() - METRICS_HISTORY_S)


@dataclass
class _Operation:
    name: str
    service: str  # full service name
    generation: int
    done_at: float  # time.monotonic()
    traffic: list[run_v2.TrafficTarget]
    new_revision: str = ""  # full revision name created (or reused) by this update
    error: str = ""  # set when the operation fails
    error_code: int = NOT_FOUND  # google.rpc.Code of that failure
    done: bool = False
    result: run_v2.Service | None = None


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _location(name: str) -> str:
    return "/".join(name.split("/")[:4])


def _etag() -> str:
    return uuid.uuid4().hex[:16]


def _int_enums(request: Request) -> bool:
    return "enum-encoding=int" in request.arg("$alt")


def _message_response(message: Any, request: Request) -> Response:
    body = type(message).to_json(
        message,
        use_integers_for_enums=_int_enums(request),
        always_print_fields_with_no_presence=False,
        indent=None,
    )
    return Response(200, body.encode())


def _plain_error(status: int, message: str) -> Response:
    return text_response(message + "\n", status)


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError as error:
        raise HttpError(400, "body is not JSON") from error
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    return body


def _behaviour_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``Behaviour`` (an int ``healthz_status``, the rest floats)."""
    allowed = {f.name for f in fields(Behaviour)}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValueError(f"unknown behaviour field(s) {unknown}; known: {sorted(allowed)}")
    converted = {
        key: int(value) if key == "healthz_status" else float(value)
        for key, value in changes.items()
    }
    if not 0.0 <= converted.get("error_rate", 0.0) <= 1.0:
        raise ValueError("error_rate is a fraction between 0 and 1")
    if any(converted.get(key, 0) < 0 for key in ("p95_ms", "rps")):
        raise ValueError("p95_ms and rps cannot be negative")
    return converted


def _page(items: list[Any], request: Request) -> tuple[list[Any], str]:
    try:
        start = int(request.arg("pageToken") or 0)
        size = int(request.arg("pageSize") or 0) or DEFAULT_PAGE_SIZE
    except ValueError as error:
        raise HttpError(400, "invalid pageToken or pageSize") from error
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


def _config_of(template: run_v2.RevisionTemplate) -> run_v2.RevisionTemplate:
    """A revision's configuration: its template without the name."""
    config = run_v2.RevisionTemplate(template)
    config.revision = ""
    return config


def _condition(
    state: run_v2.Condition.State, at: datetime, message: str = "", type_: str = "Ready"
) -> run_v2.Condition:
    severity = run_v2.Condition.Severity.ERROR if state == State.CONDITION_FAILED else None
    condition = run_v2.Condition(type_=type_, state=state, message=message, last_transition_time=at)
    if severity is not None:
        condition.severity = severity
    return condition


def _mark_ready(revision: run_v2.Revision, at: datetime) -> None:
    revision.reconciling = False
    revision.conditions = [_condition(State.CONDITION_SUCCEEDED, at)]


def _statuses(
    targets: list[run_v2.TrafficTarget], latest_ready: str
) -> list[run_v2.TrafficTargetStatus]:
    return [
        run_v2.TrafficTargetStatus(
            type_=t.type_,
            revision=latest_ready if t.type_ == LATEST else t.revision,
            percent=t.percent,
            tag=t.tag,
        )
        for t in targets
    ]
