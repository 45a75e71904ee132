"""The facts of a postmortem draft. Pure: no I/O.

When an incident is mitigated Runback uploads a Markdown postmortem DRAFT to the incident
thread, rendered by ``Renderer.document("postmortem", locale, **context)`` from
``templates/<locale>/postmortem.md.j2``. The draft holds every fact Runback recorded, marked as
facts, and leaves the judgement sections of the runbook ("Comunicación & Postmortem": Qué falló /
Por qué no se detectó / Cómo prevenir / Acción correctiva) empty for people. Nothing is
invented: a missing fact (``None`` or ``""``) is shown as "unknown" / "desconocido".

The context (every key is required; the templates use ``StrictUndefined``; datetimes are
timezone-aware, shown in UTC)::

    {
      "incident": {
        "id": str,                      # Runback's incident id
        "external_id": str,             # Cloud Monitoring's incident id
        "service": str,
        "environment": str,             # "production" | "staging"
        "policy_name": str,             # alert policy display name
        "condition_name": str,
        "metric_type": str,             # e.g. "run.googleapis.com/request_count"
        "observed_value": str,          # as the alert reported it
        "threshold_value": str,
        "url": str,                     # Cloud Monitoring incident URL (linked only if http(s))
        "summary": str,                 # alert text: untrusted, escaped, clipped to 1000 chars
        "started_at": datetime | None,  # the alert condition started
        "received_at": datetime,        # Runback received the alert
        "mitigated_at": datetime | None,
        "resolved_at": datetime | None,
        "verdict": str,                 # "rollback" | "observe" | "proceed" | "inconclusive"
        "reasons": list[str],           # "healthz_failed", "error_rate_high", "p95_high",
                                        # "error_rate_elevated", "p95_elevated",
                                        # "too_few_requests", "no_data", "healthy"
      },
      "rollback": None | {
        "id": str,                      # operation id
        "from": {"revision": str, "image": str, "created": datetime | None},  # the bad one
        "to": {"revision": str, "image": str, "created": datetime | None},
        "requested_by": str,            # Slack user id, or "runback" when automatic
        "approved_by": str,             # Slack user id; "" when self-approved
        "emergency": bool,
        "automatic": bool,
        "state": str,                   # the rollback state machine's state, e.g. "succeeded"
      },
      "time_to_detect_s": float | None,    # bad revision deployed -> alert started
      "time_to_mitigate_s": float | None,  # alert started -> traffic safe
      "timeline": [                        # in the order it is to be shown (oldest first)
        {"at": datetime, "kind": str, "actor": str, "detail": dict},
        # kinds and their detail keys (other keys are shown as "key: value"):
        #   alert_received, judged (verdict, error_rate, p95_ms, requests),
        #   observe_started (until: datetime), acknowledged, rollback_requested (target),
        #   approved, traffic_shifted, healthz_verified, rollback_failed (code), mitigated,
        #   alert_closed, resolved.  An unknown kind is shown by its name.
        # actor: Slack user id, "runback", or another system name; "" when unknown.
      ],
      "metrics_at_trigger": None | {
        "revision": str, "requests": int, "errors": int,
        "error_rate": float | None,     # a ratio: 0.0712 is 7.12%
        "p95_ms": float | None,
        "window_minutes": float,
      },
      "metrics_after": None | same shape as metrics_at_trigger,
      "top_errors": list[dict],         # top_errors() below, for the bad revision
      "thresholds": {"error_rate_rollback": 0.05, "error_rate_observe": 0.01,
                     "p95_rollback_ms": 2000, "p95_proceed_ms": 800},
      "people": {str: str},             # Slack user id -> display name (a missing one: the id)
      "generated_at": datetime,
    }

``sample_context()`` returns a realistic, complete example (tests and golden files use it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["SEVERITY_ORDER", "normalize_message", "sample_context", "top_errors"]

# Cloud Logging's LogSeverity, least to most severe.
SEVERITY_ORDER = (
    "DEFAULT",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "ALERT",
    "EMERGENCY",
)
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITY_ORDER)}

_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_HEX_PREFIXED = re.compile(r"\b0x[0-9a-f]+\b", re.I)
# 8+ hex digits with at least one digit and one letter: trace ids, hashes, request ids.
_HEX_ID = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I)
# A number not glued to a preceding letter ("3012ms" -> "Nms", but "utf8" and "v1.2" stay).
_NUMBER = re.compile(r"(?<![A-Za-z_])\d+(?:\.\d+)*")
_SPACES = re.compile(r"\s+")
_TRACEBACK = "Traceback (most recent call last)"


def top_errors(entries: list[dict[str, Any]], limit: int = 5) -> list[dict[str, Any]]:
    """The most frequent messages of Cloud Logging entries (``entries:list`` LogEntry dicts).

    Entries are grouped by their message's first line with volatile parts normalised (see
    ``normalize_message``). Each group keeps the first raw first line seen as ``example`` and
    the most severe ``severity`` seen. Sorted by count (descending), then message. Entries
    without text are ignored.
    """
    if limit <= 0:
        return []
    groups: dict[str, dict[str, Any]] = {}
    for entry in entries:
        line = _first_line(_entry_text(entry))
        if not line:
            continue
        key = normalize_message(line)
        severity = str(entry.get("severity") or "DEFAULT").upper()
        group = groups.get(key)
        if group is None:
            groups[key] = {"message": key, "count": 1, "example": line, "severity": severity}
            continue
        group["count"] += 1
        if _SEVERITY_RANK.get(severity, 0) > _SEVERITY_RANK.get(group["severity"], 0):
            group["severity"] = severity
    ranked = sorted(groups.values(), key=lambda g: (-g["count"], g["message"]))
    return ranked[:limit]


def normalize_message(line: str) -> str:
    """One message with its volatile parts replaced: timestamps, UUIDs and hex ids by "…",
    numbers by "N"; runs of whitespace collapsed."""
    text = _TIMESTAMP.sub("…", line)
    text = _UUID.sub("…", text)
    text = _HEX_PREFIXED.sub("…", text)
    text = _HEX_ID.sub("…", text)
    text = _NUMBER.sub("N", text)
    return _SPACES.sub(" ", text).strip()


def _entry_text(entry: dict[str, Any]) -> str:
    payload = entry.get("jsonPayload")
    if isinstance(payload, dict):
        for key in ("message", "error", "msg"):
            value = payload.get(key)
            if isinstance(value, dict):  # e.g. {"error": {"message": "...", "code": 13}}
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                return value
    text = entry.get("textPayload")
    return text if isinstance(text, str) else ""


def _first_line(text: str) -> str:
    """The first non-blank line; for a Python traceback, its last line (the exception)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].startswith(_TRACEBACK) and len(lines) > 1:
        return lines[-1]
    return lines[0]


def sample_context() -> dict[str, Any]:
    """A realistic, complete postmortem context (fixed UTC datetimes) for tests and goldens.

    wa-backend v1.2.0 (``wa-backend-00003``) starts timing out; the alert fires, Runback
    observes, then judges "rollback"; the on-call engineer rolls back to ``wa-backend-00002``.
    """
    day = datetime(2026, 11, 27, tzinfo=UTC)

    def at(hh: int, mm: int, ss: int) -> datetime:
        return day + timedelta(hours=hh, minutes=mm, seconds=ss)

    deployed = at(20, 31, 40)
    started = at(21, 3, 10)
    received = at(21, 4, 5)
    safe = at(21, 9, 36)
    bad, good = "wa-backend-00003", "wa-backend-00002"
    registry = "us-central1-docker.pkg.dev/wa-prod/wa/wa-backend"
    resource = {
        "type": "cloud_run_revision",
        "labels": {"service_name": "wa-backend", "revision_name": bad},
    }

    def log(severity: str, text: str | None = None, **payload: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "severity": severity,
            "timestamp": "2026-11-27T21:05:00Z",
            "resource": resource,
        }
        if text is not None:
            entry["textPayload"] = text
        if payload:
            entry["jsonPayload"] = payload
        return entry

    entries = [
        *(
            log("ERROR", message=f"timeout after {ms}ms for order {order}")
            for ms, order in [(3012, 8812), (2999, 17), (3150, 9031), (3004, 1202), (3100, 77)]
        ),
        *(
            log(
                "ERROR",
                "Traceback (most recent call last):\n"
                '  File "/app/wa_orchestrator/handlers.py", line 88, in reservar\n'
                "    slots = reserva.get_slots_v2()\n"
                f"KeyError: 'slots_v2' (reserva {rid})",
            )
            for rid in (4411, 4412, 4470)
        ),
        *(
            log("CRITICAL", error={"message": f"db pool exhausted (trace {trace})", "code": 13})
            for trace in ("3f9a1c77e0b2", "a0d94e11c3f8")
        ),
        log("WARNING", msg="retrying upstream call to payments & notifications (attempt 2/3)"),
        log("ERROR", "upstream returned 503 for GET /v1/slots?date=2026-11-28"),
        log("ERROR", "   "),  # no text: ignored
        log("INFO", labels={"no": "message"}),  # no text: ignored
    ]

    timeline = [
        {"at": received, "kind": "alert_received", "actor": "cloud-monitoring", "detail": {}},
        {
            "at": at(21, 4, 6),
            "kind": "judged",
            "actor": "runback",
            "detail": {"verdict": "observe", "error_rate": 0.021, "p95_ms": 910.0, "requests": 388},
        },
        {
            "at": at(21, 4, 6),
            "kind": "observe_started",
            "actor": "runback",
            "detail": {"until": at(21, 9, 6)},
        },
        {"at": at(21, 5, 40), "kind": "acknowledged", "actor": "U0ANA", "detail": {}},
        {
            "at": at(21, 9, 7),
            "kind": "judged",
            "actor": "runback",
            "detail": {
                "verdict": "rollback",
                "error_rate": 86 / 1204,
                "p95_ms": 2340.0,
                "requests": 1204,
            },
        },
        {
            "at": at(21, 9, 31),
            "kind": "rollback_requested",
            "actor": "U0ANA",
            "detail": {"target": good, "reason": "timeouts after v1.2.0 | see #incidents"},
        },
        {
            "at": at(21, 9, 33),
            "kind": "traffic_shifted",
            "actor": "runback",
            "detail": {"revision": good, "percent": 100},
        },
        {"at": safe, "kind": "healthz_verified", "actor": "runback", "detail": {"status": 200}},
        {"at": safe, "kind": "mitigated", "actor": "runback", "detail": {}},
        {"at": at(21, 16, 2), "kind": "alert_closed", "actor": "cloud-monitoring", "detail": {}},
        {"at": at(21, 20, 0), "kind": "resolved", "actor": "U0ANA", "detail": {}},
    ]

    return {
        "people": {"U0ANA": "Ana García"},
        "incident": {
            "id": "inc-20261127-0042",
            "external_id": "0.nk3f9x2a1b7q",
            "service": "wa-backend",
            "environment": "production",
            "policy_name": "[PROD] wa-backend error rate > 1%",
            "condition_name": "Cloud Run 5xx ratio above 1% for 1 min",
            "metric_type": "run.googleapis.com/request_count",
            "observed_value": "0.021",
            "threshold_value": "0.01",
            "url": (
                "https://console.cloud.google.com/monitoring/alerting/incidents/"
                "0.nk3f9x2a1b7q?project=wa-prod&supportedpurview=project"
            ),
            "summary": (
                "5xx ratio for wa-backend (revision wa-backend-00003) is above the threshold "
                "of 0.01 with a value of 0.021 & rising."
            ),
            "started_at": started,
            "received_at": received,
            "mitigated_at": safe,
            "resolved_at": at(21, 20, 0),
            "verdict": "rollback",
            "reasons": ["error_rate_high", "p95_high"],
        },
        "rollback": {
            "id": "op-7f3a",
            "from": {"revision": bad, "image": f"{registry}:v1.2.0", "created": deployed},
            "to": {
                "revision": good,
                "image": f"{registry}:v1.1.0",
                "created": datetime(2026, 11, 26, 16, 12, 9, tzinfo=UTC),
            },
            "requested_by": "U0ANA",
            "approved_by": "",
            "emergency": True,
            "automatic": False,
            "state": "succeeded",
        },
        "time_to_detect_s": (started - deployed).total_seconds(),
        "time_to_mitigate_s": (safe - started).total_seconds(),
        "timeline": timeline,
        "metrics_at_trigger": {
            "revision": bad,
            "requests": 1204,
            "errors": 86,
            "error_rate": 86 / 1204,
            "p95_ms": 2340.0,
            "window_minutes": 5.0,
        },
        "metrics_after": {
            "revision": good,
            "requests": 1310,
            "errors": 4,
            "error_rate": 4 / 1310,
            "p95_ms": 412.5,
            "window_minutes": 5.0,
        },
        "top_errors": top_errors(entries),
        "thresholds": {
            "error_rate_rollback": 0.05,
            "error_rate_observe": 0.01,
            "p95_rollback_ms": 2000,
            "p95_proceed_ms": 800,
        },
        "generated_at": at(21, 20, 5),
    }
