"""The flip's Cloud Run changes: one PATCH each, its operation name committed before it is
awaited, so a restarted bot follows the operation instead of sending the change twice.

A stale etag is retried once with a fresh read (someone else changed the service in between);
5xx, 429 and timeouts are retried by the adapter within its deadline. Whatever still fails is
said on the card with the traffic as it is now, read fresh."""

from __future__ import annotations

from typing import Any

from bot.ops.applying import Changes
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.flags.record import RECORD, commit, end
from bot.ops.flags.states import FLAG_TAG, FlagData
from bot.ops.traffic import with_other_tags
from bot.ports import CloudRunError, EnvVar, TrafficTarget
from bot.store import Operation


def patch(
    deps: Deps,
    operation: Operation,
    targets: list[TrafficTarget],
    then: str,
    purpose: str,
    deploy: bool = False,
) -> Operation:
    """Send one PATCH (the env change with ``deploy``, else traffic) and commit its operation
    name before waiting for it (state ``applying``)."""
    return CHANGES.apply(
        deps, operation, lambda: _send(deps, operation, targets, deploy), then, purpose
    )


def _send(
    deps: Deps, operation: Operation, targets: list[TrafficTarget], deploy: bool
) -> tuple[str, list[TrafficTarget]]:
    ref = deps.service_ref(deps.managed_service(operation.service))
    state = deps.cloudrun.get_service(ref)
    sent = with_other_tags(targets, state, own=(FLAG_TAG,), ride=False)  # each at 0%
    if deploy:
        flip = FlagData.of(operation)
        env = EnvVar(flip.env, flip.text)
        base = operation.from_revision
        name = deps.cloudrun.start_env_update(
            ref, base, env, operation.to_revision, sent, state.etag
        )
    else:
        name = deps.cloudrun.start_traffic_update(ref, sent, state.etag)
    return name, sent


def traffic_now(deps: Deps, operation: Operation) -> dict[str, int] | None:
    """What serves now, read fresh; None when Cloud Run cannot say."""
    try:
        ref = deps.service_ref(deps.managed_service(operation.service))
        return deps.cloudrun.get_service(ref).serving()
    except CloudRunError:
        return None


def cloud_failure(
    deps: Deps, operation: Operation, purpose: str, error: CloudRunError
) -> Operation:
    """A change failed after the adapter's retries. If the flag revision may have traffic,
    go back to the previous revision; otherwise end, saying where traffic is now."""
    detail = (error.detail or error.reason)[:500]
    deps.audit(
        BOT_ACTOR,
        f"cloudrun.flag_{purpose}",
        "failed",
        service=operation.service,
        operation_id=operation.id,
        reason=error.reason,
        detail=detail,
    )
    outcome: dict[str, Any] = {"code": f"{purpose}_failed", "detail": detail}
    if purpose == "shift":
        return commit(deps, operation, "rolling_back", due_at=None, pending=None, outcome=outcome)
    operation = commit(deps, operation, traffic_now=traffic_now(deps, operation))
    return end(deps, operation, "failed", outcome)


CHANGES = Changes(RECORD, "cloudrun.flag_", cloud_failure, retry_stale=True)
