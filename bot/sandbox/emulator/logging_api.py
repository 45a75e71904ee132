"""Cloud Logging v2 REST emulator: ``entries:write`` and ``entries:list``.

Shaped after what ``google-cloud-logging`` sends with ``_use_grpc=False``: both calls are POSTs
with a JSON body (``entries:list`` puts resourceNames, filter, orderBy, pageSize/maxResults and
pageToken in the body). Entries are validated by parsing them into the library's own
``LogEntry`` type (unknown fields are a 400) and stored as JSON dicts.

The filter language is a subset: comparisons joined by ``AND``, e.g.
``logName="projects/p/logs/runback-audit" AND severity>=ERROR AND jsonPayload.service=wa``.
Operators ``= != > >= < <= :`` (``:`` is "contains"); values quoted or bare; dotted paths into
the entry (``jsonPayload.x``, ``resource.labels.y``, ``labels.z``). ``severity`` compares by
level, ``timestamp`` as a time. Anything else (OR, NOT, parentheses) is a 400.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.cloud.logging_v2.types import LogEntry
from google.protobuf import json_format

from bot.sandbox.emulator.http import HttpError, Request, Response, Router, json_response

SEVERITIES = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_LOG_NAME = re.compile(r"(projects|organizations|folders|billingAccounts)/[^/]+/logs/[^/]+")
_TERM = re.compile(
    r"""\s*(?P<field>[A-Za-z_][\w.]*)\s*(?P<op>>=|<=|!=|=|>|<|:)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|[^\s"]+)\s*""",
    re.VERBOSE,
)

Predicate = Callable[[dict[str, Any]], bool]


class LoggingEmulator:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    # -- Python API ---------------------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        """Every stored entry, in the order written."""
        with self._lock:
            return copy.deepcopy(self._entries)

    def add_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Store one entry (e.g. a revision's error log) as if it had been written.

        It needs ``logName`` and ``resource``; raises ValueError when Cloud Logging would refuse it.
        """
        try:
            stored = _complete(_validated(dict(entry)))
        except HttpError as error:
            raise ValueError(error.message) from error
        with self._lock:
            self._entries.append(stored)
        return copy.deepcopy(stored)

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    # -- routes -------------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        router.add("POST", "/v2/entries:write", "logging.entries.write", self._write)
        router.add("POST", "/v2/entries:list", "logging.entries.list", self._list)
        router.add("GET", "/_emulator/logs", "_emulator.logs.list", self._control_list)

    def _write(self, request: Request) -> Response:
        body = _json_body(request)
        raw_entries = body.get("entries")
        if not isinstance(raw_entries, list) or not raw_entries:
            raise HttpError(400, "entries: at least one log entry is required")
        defaults: dict[str, Any] = {
            k: body[k] for k in ("logName", "resource", "labels") if k in body
        }
        prepared = [_validated(_with_defaults(e, defaults)) for e in raw_entries]
        if body.get("dryRun") or body.get("dry_run"):
            return json_response({})
        with self._lock:
            self._entries.extend(_complete(e) for e in prepared)
        return json_response({})

    def _list(self, request: Request) -> Response:
        body = _json_body(request)
        resources = body.get("resourceNames") or []
        if not isinstance(resources, list) or not resources:
            raise HttpError(400, "resourceNames: at least one resource name is required")
        matches = _compile_filter(str(body.get("filter") or ""))
        descending = _descending(str(body.get("orderBy") or ""))
        with self._lock:
            found = [
                e
                for e in self._entries
                if _in_resources(e, resources) and all(m(e) for m in matches)
            ]
        found.sort(key=lambda e: _parse_time(e["timestamp"]), reverse=descending)
        page, token = _page(found, body)
        result: dict[str, Any] = {"entries": page}
        if token:
            result["nextPageToken"] = token
        return json_response(result)

    def _control_list(self, request: Request) -> Response:
        return json_response(self.entries())


# -- entries ----------------------------------------------------------------------------------


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError as error:
        raise HttpError(400, "Invalid JSON payload received.") from error
    if not isinstance(body, dict):
        raise HttpError(400, "Invalid JSON payload received: expected an object.")
    return body


def _with_defaults(entry: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise HttpError(400, "each log entry must be a JSON object")
    merged = {**{k: v for k, v in defaults.items() if k != "labels"}, **entry}
    if "labels" in defaults or "labels" in entry:
        merged["labels"] = {**defaults.get("labels", {}), **entry.get("labels", {})}
    return merged


def _validated(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry itself, once the library's LogEntry type accepts it (else a 400)."""
    try:
        LogEntry.from_json(json.dumps(entry), ignore_unknown_fields=False)
    except (json_format.ParseError, TypeError, ValueError) as error:
        raise HttpError(400, f"Invalid log entry: {error}") from error
    if not _LOG_NAME.fullmatch(str(entry.get("logName", ""))):
        raise HttpError(400, f"Invalid logName {entry.get('logName')!r}")
    if "resource" not in entry:
        raise HttpError(400, "a log entry needs a resource (e.g. {'type': 'global'})")
    return entry


def _complete(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as Cloud Logging stores it: RFC 3339 UTC times, insertId, severity."""
    now = _rfc3339(datetime.now(UTC))
    stored = copy.deepcopy(entry)
    stored["timestamp"] = (
        _rfc3339(_parse_time(stored["timestamp"])) if "timestamp" in stored else now
    )
    stored.setdefault("insertId", uuid.uuid4().hex[:20])
    stored.setdefault("severity", "DEFAULT")
    stored["receiveTimestamp"] = now
    return stored


def _in_resources(entry: dict[str, Any], resources: list[str]) -> bool:
    return any(entry["logName"].startswith(f"{r}/logs/") for r in resources)


def _descending(order_by: str) -> bool:
    normalised = " ".join(order_by.lower().split())
    if normalised in ("", "timestamp", "timestamp asc"):
        return False
    if normalised == "timestamp desc":
        return True
    raise HttpError(400, f"orderBy must be 'timestamp asc' or 'timestamp desc', not {order_by!r}")


def _page(entries: list[dict[str, Any]], body: dict[str, Any]) -> tuple[list[Any], str]:
    try:
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or body.get("maxResults") or DEFAULT_PAGE_SIZE)
    except (TypeError, ValueError) as error:
        raise HttpError(400, "invalid pageToken or pageSize") from error
    end = start + min(max(size, 1), MAX_PAGE_SIZE)
    return entries[start:end], (str(end) if end < len(entries) else "")


# -- filters ----------------------------------------------------------------------------------


def _compile_filter(text: str) -> list[Predicate]:
    if not text.strip():
        return []
    return [_compile_term(term) for term in re.split(r"\s+AND\s+", text.strip())]


def _compile_term(term: str) -> Predicate:
    match = _TERM.fullmatch(term)
    if match is None:
        raise HttpError(
            400,
            f"Unsupported filter expression: {term!r} (this emulator "
            "understands comparisons joined by AND)",
        )
    path, op, value = match["field"], match["op"], _unquote(match["value"])
    if path == "severity":
        wanted = _severity_rank(value)
        return lambda e: _compare(_severity_rank(e.get("severity", "DEFAULT")), op, wanted)
    if path in ("timestamp", "receiveTimestamp"):
        moment = _parse_filter_time(value)
        return lambda e: path in e and _compare(_parse_time(e[path]), op, moment)
    return lambda e: _compare_value(_lookup(e, path), op, value)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _lookup(entry: dict[str, Any], path: str) -> Any:
    current: Any = entry
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _compare_value(actual: Any, op: str, wanted: str) -> bool:
    if actual is None:
        return op == "!="
    if isinstance(actual, bool):
        actual = "true" if actual else "false"
    if op == ":":
        return wanted.lower() in str(actual).lower()
    try:
        return _compare(float(actual), op, float(wanted))
    except (TypeError, ValueError):
        return _compare(str(actual), op, wanted)


def _compare(actual: Any, op: str, wanted: Any) -> bool:
    if op in ("=", ":"):
        return bool(actual == wanted)
    if op == "!=":
        return bool(actual != wanted)
    if op == ">":
        return bool(actual > wanted)
    if op == ">=":
        return bool(actual >= wanted)
    if op == "<":
        return bool(actual < wanted)
    return bool(actual <= wanted)


def _severity_rank(value: Any) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    rank = SEVERITIES.get(str(value).upper())
    if rank is None:
        raise HttpError(400, f"unknown severity {value!r}")
    return rank


def _parse_time(value: str) -> datetime:
    """RFC 3339 with Z or an offset (+00:00 or +0000), up to nanoseconds."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip())
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_filter_time(value: str) -> datetime:
    try:
        return _parse_time(value)
    except ValueError as error:
        raise HttpError(400, f"invalid timestamp {value!r} in filter") from error
