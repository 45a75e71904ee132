"""Phases 1 and 2: deploy green at 0% with a tag, then smoke-test the tag URL."""

from __future__ import annotations

import re
from typing import Any

from bot.ops.context import Deps
from bot.ops.health import config_problem
from bot.ops.release.backup import before_green
from bot.ops.release.canary import next_step
from bot.ops.release.cloud import cloud_failure, patch
from bot.ops.release.green import green_audience, probe_green
from bot.ops.release.record import commit, end, event
from bot.ops.release.states import GREEN_TAG, ReleaseData
from bot.ops.release_migrations import record_green
from bot.ops.traffic import serving_targets
from bot.ports import CloudRunError, ServiceState, TrafficTarget
from bot.store import Operation

PROMETHEUS_LINE = re.compile(r"^(# (HELP|TYPE) |[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? )", re.M)


def step_deploy(deps: Deps, operation: Operation) -> Operation:
    if ReleaseData.of(operation).backup is None:  # once, even when the deploy is tried again
        backing_up = before_green(deps, operation)
        if backing_up is not None and backing_up.state != "deploying":
            return backing_up  # green waits for the pre-deployment backup
        operation = backing_up or operation
    ref = deps.service_ref(deps.managed_service(operation.service))
    try:
        state = deps.cloudrun.get_service(ref)
    except CloudRunError as error:
        return cloud_failure(deps, operation, "deploy", error)
    targets = [*serving_targets(state), TrafficTarget(operation.to_revision, 0, GREEN_TAG)]
    return patch(deps, operation, targets, then="deployed", purpose="deploy", deploy=True)


def after_deploy(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    tag = next((s for s in state.traffic if s.tag == GREEN_TAG), None)
    if tag is None or not tag.uri:
        return _untag(deps, operation, {"code": "no_tag_url"})
    event(deps, operation, "deployed", revision=operation.to_revision, uri=tag.uri)
    migration = ReleaseData.of(operation).migration
    record_green(deps, operation, migration.model_dump() if migration else None)
    return commit(deps, operation, "smoke", green_uri=tag.uri, service_uri=state.uri)


def step_smoke(deps: Deps, operation: Operation) -> Operation:
    release = ReleaseData.of(operation)
    if release.stop_requested:
        return _untag(deps, operation, release.outcome or {"code": "stopped"})
    uri = release.green_uri.rstrip("/")
    service = deps.managed_service(operation.service)
    timeout = deps.config.rollback.health_check_timeout_s
    for _ in range(deps.config.release.smoke_checks):
        _, result = probe_green(deps, operation)
        if config_problem(result):  # a configuration error: green is not known to be bad
            return _untag(deps, operation, {"code": result.problem, "check": service.health_path})
        if not result.ok:
            return _smoke_failed(deps, operation, service.health_path, result.status, result.detail)
    audience = green_audience(deps, operation)
    metrics = deps.probe.get(uri + "/metrics", timeout, audience=audience)
    if not metrics.ok or not PROMETHEUS_LINE.search(metrics.detail):
        return _smoke_failed(deps, operation, "/metrics", metrics.status, metrics.detail)
    event(deps, operation, "smoke_passed")
    return next_step(deps, operation)


def _smoke_failed(
    deps: Deps, operation: Operation, check: str, status: int | None, seen: str
) -> Operation:
    """Green stays at 0% and loses its tag: no user ever saw it."""
    event(deps, operation, "smoke_failed", check=check, status=status)
    outcome = {"code": "smoke_failed", "check": check, "status": status, "seen": seen[:200]}
    return _untag(deps, operation, outcome)


def _untag(deps: Deps, operation: Operation, outcome: dict[str, Any]) -> Operation:
    """Remove green's tag, leaving every other target as it is (``patch`` keeps the other tags),
    then end as failed."""
    operation = commit(deps, operation, outcome=outcome)
    try:
        state = deps.cloudrun.get_service(deps.service_ref(deps.managed_service(operation.service)))
    except CloudRunError as error:
        return cloud_failure(deps, operation, "untag", error)
    return patch(deps, operation, serving_targets(state), then="untagged", purpose="untag")


def after_untag(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    return end(deps, operation, "failed", ReleaseData.of(operation).outcome or {})
