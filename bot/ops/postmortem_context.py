"""Gathers the facts of a postmortem draft (schema in bot/ops/postmortem.py) from the store,
Cloud Monitoring and Cloud Logging. Anything that cannot be read is left unknown, never guessed."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.config import ServiceConfig
from bot.ops.context import Deps
from bot.ops.postmortem import is_error_entry, top_errors
from bot.ops.rollback import rollback_data
from bot.ports import MetricsError, ServiceRef
from bot.render import is_user_id
from bot.store import IncidentRecord, Operation

log = logging.getLogger("runback.postmortem")

# The rollback's own timeline, in the postmortem's words.
OPERATION_KINDS = {
    "requested": "rollback_requested",
    "approved": "approved",
    "traffic_shifted": "traffic_shifted",
    "healthz_verified": "healthz_verified",
    "failed": "rollback_failed",
}


def build_postmortem(deps: Deps, record: IncidentRecord) -> dict[str, Any]:
    operation = (
        deps.store.operations.operation(record.operation_id) if record.operation_id else None
    )
    service = deps.config.service(record.service)
    thresholds = deps.config.thresholds
    judgements = record.data.get("judgements") or []
    rollback = _rollback(deps, operation)
    bad_revision = rollback["from"]["revision"] if rollback else record.revision
    timeline = _timeline(deps, record, operation)
    return {
        "incident": _incident(record, service.environment if service else ""),
        "rollback": rollback,
        "time_to_detect_s": _seconds(_created(operation, "from"), record.started_at),
        "time_to_mitigate_s": _seconds(record.started_at, record.mitigated_at),
        "timeline": timeline,
        "people": _people(deps, timeline, rollback),
        "metrics_at_trigger": _metrics_from_judgement(judgements[0] if judgements else None),
        "metrics_after": record.data.get("metrics_after")
        or _metrics_after(deps, record, operation),
        "top_errors": _top_errors(deps, service, bad_revision),
        "thresholds": {
            "error_rate_rollback": thresholds.error_rate_rollback,
            "error_rate_observe": thresholds.error_rate_observe,
            "p95_rollback_ms": thresholds.p95_rollback_ms,
            "p95_proceed_ms": thresholds.p95_proceed_ms,
        },
        "generated_at": deps.clock.now(),
    }


def _people(
    deps: Deps, timeline: list[dict[str, Any]], rollback: dict[str, Any] | None
) -> dict[str, str]:
    """The display name of everyone the draft names: it is read outside Slack, where a bare
    user id means nothing. A name Slack will not give is left out (the id is shown)."""
    ids = {row["actor"] for row in timeline}
    if rollback:
        ids |= {rollback["requested_by"], rollback["approved_by"]}
    names = {user: deps.directory.display_name(user) for user in sorted(ids) if is_user_id(user)}
    return {user: name for user, name in names.items() if name}


def _incident(record: IncidentRecord, environment: str) -> dict[str, Any]:
    alert = record.alert or {}
    last = (record.data.get("judgements") or [{}])[-1]
    return {
        "id": record.id,
        "external_id": record.external_id,
        "service": record.service,
        "environment": environment,
        **{
            key: str(alert.get(key, ""))
            for key in (
                "policy_name",
                "condition_name",
                "metric_type",
                "observed_value",
                "threshold_value",
                "url",
                "summary",
            )
        },
        "started_at": record.started_at,
        "received_at": record.received_at,
        "mitigated_at": record.mitigated_at,
        "resolved_at": record.resolved_at,
        "verdict": record.verdict,
        "reasons": list(last.get("reasons", [])),
    }


def _rollback(deps: Deps, operation: Operation | None) -> dict[str, Any] | None:
    if operation is None:
        return None
    approval = deps.store.approvals.approval_for(operation.id)
    data = rollback_data(operation)

    def side(which: str) -> dict[str, Any]:
        facts = data.from_ if which == "from" else data.to
        return {
            "revision": facts.revision,
            "image": facts.image,
            "created": _created(operation, which),
        }

    return {
        "id": operation.id,
        "from": side("from"),
        "to": side("to"),
        "requested_by": operation.requested_by,
        "approved_by": approval.decided_by if approval and approval.status == "approved" else "",
        "emergency": operation.emergency,
        "automatic": data.automatic,
        "state": operation.state,
    }


def _created(operation: Operation | None, which: str) -> datetime | None:
    """When a revision was created: its age when the rollback was requested, subtracted."""
    if operation is None:
        return None
    data = rollback_data(operation)
    age = (data.from_ if which == "from" else data.to).age_s
    requested = data.requested_at
    if age is None or not requested:
        return None
    return datetime.fromisoformat(requested) - timedelta(seconds=float(age))


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def _timeline(
    deps: Deps, record: IncidentRecord, operation: Operation | None
) -> list[dict[str, Any]]:
    rows = [_row(e.at, e.kind, e.actor, e.data) for e in deps.store.journal.timeline(record.id)]
    if operation is not None:
        for event in deps.store.journal.timeline(operation.id):
            kind = OPERATION_KINDS.get(event.kind)
            if kind and not (kind == "rollback_requested" and _has(rows, kind)):
                rows.append(_row(event.at, kind, event.actor, event.data))
    return sorted(rows, key=lambda row: row["at"])


def _has(rows: list[dict[str, Any]], kind: str) -> bool:
    return any(row["kind"] == kind for row in rows)


def _row(at: datetime, kind: str, actor: str, data: dict[str, Any]) -> dict[str, Any]:
    detail = dict(data or {})
    if kind == "observe_started" and isinstance(detail.get("until"), str):
        detail["until"] = datetime.fromisoformat(detail["until"])
    serving = detail.pop("serving", None)
    if kind == "traffic_shifted" and isinstance(serving, dict) and len(serving) == 1:
        ((revision, percent),) = serving.items()
        detail.update(revision=revision, percent=percent)
    if kind == "judged":
        detail = {k: detail.get(k) for k in ("verdict", "error_rate", "p95_ms", "requests")}
    return {"at": at, "kind": kind, "actor": actor, "detail": detail}


def _metrics_from_judgement(judgement: dict[str, Any] | None) -> dict[str, Any] | None:
    # no requests: a judgement the health check made before Monitoring showed a minute
    if not judgement or not judgement.get("requests"):
        return None
    return {
        "revision": judgement.get("revision", ""),
        "requests": judgement["requests"],
        "errors": judgement.get("errors") or 0,
        "error_rate": judgement.get("error_rate"),
        "p95_ms": judgement.get("p95_ms"),
        "window_minutes": judgement.get("window_minutes", 0),
    }


def _metrics_after(
    deps: Deps, record: IncidentRecord, operation: Operation | None
) -> dict[str, Any] | None:
    service = deps.config.service(record.service)
    if service is None or operation is None or operation.state != "succeeded":
        return None
    ref = ServiceRef(service.project, service.region, service.name)
    window = deps.config.thresholds.window_minutes
    end = deps.clock.now()
    try:
        metrics = deps.metrics.revision_metrics(
            ref, operation.to_revision, end - timedelta(minutes=window), end
        )
    except MetricsError as error:
        log.warning("no metrics after mitigation for %s: %s", record.id, error)
        return None
    return {
        "revision": operation.to_revision,
        "requests": metrics.requests,
        "errors": metrics.errors,
        "error_rate": metrics.error_rate,
        "p95_ms": metrics.p95_ms,
        "window_minutes": window,
    }


# Cloud Run shows a failure in three ways (https://cloud.google.com/run/docs/logging): a
# structured entry with a severity, a request log whose httpRequest.status is 5xx, and a plain
# stdout/stderr line, which has no severity at all. One query each, merged.
ERROR_QUERIES = ("severity>=ERROR", "httpRequest.status>=500", "severity=DEFAULT")
LOG_READ_LIMIT = 500


def _top_errors(deps: Deps, service: ServiceConfig | None, revision: str) -> list[dict[str, Any]]:
    if not revision or service is None:
        return []
    base = (
        f'resource.type="cloud_run_revision" AND resource.labels.service_name="{service.name}"'
        f' AND resource.labels.revision_name="{revision}"'
    )
    seen: dict[str, dict[str, Any]] = {}
    try:
        for query in ERROR_QUERIES:
            # the service's own project, which need not be Runback's
            found = deps.logs.list_entries(
                f"{base} AND {query}", max_results=LOG_READ_LIMIT, project=service.project
            )
            for entry in found:
                seen.setdefault(str(entry.get("insertId") or id(entry)), entry)
    except Exception as error:  # the draft still helps without the log excerpt
        log.warning("could not read the error logs of %s: %s", revision, error)
        return []
    return top_errors([entry for entry in seen.values() if is_error_entry(entry)])
    query = (
        f'resource.type="cloud_run_revision" AND resource.labels.service_name="{service}"'
        f' AND resource.labels.revision_name="{revision}" AND severity>=ERROR'
    )
    try:
        return top_errors(deps.logs.list_entries(query, max_results=500))
    except Exception as error:  # the draft still helps without the log excerpt
        log.warning("could not read the error logs of %s: %s", revision, error)
        return []
