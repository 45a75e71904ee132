"""Cloud Run changes: one PATCH each, its operation name committed before it is awaited."""

from __future__ import annotations

from bot.ops.applying import Changes
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.release.record import RECORD, commit, end
from bot.ops.release.states import GREEN_TAG, ReleaseData
from bot.ops.traffic import with_other_tags
from bot.ports import CloudRunError, TrafficTarget
from bot.store import Operation


def patch(
    deps: Deps,
    operation: Operation,
    targets: list[TrafficTarget],
    then: str,
    purpose: str,
    deploy: bool = False,
) -> Operation:
    """Send one traffic (or deploy) PATCH and commit its operation name before waiting."""
    ref = deps.service_ref(deps.managed_service(operation.service))
    release = ReleaseData.of(operation)

    def send() -> tuple[str, list[TrafficTarget]]:
        state = deps.cloudrun.get_service(ref)
        sent = with_other_tags(targets, state, own=(GREEN_TAG,))
        if not deploy:
            return deps.cloudrun.start_traffic_update(ref, sent, state.etag), sent
        flag = release.migration.flag if release.migration else ""
        name = deps.cloudrun.start_deploy(
            ref,
            release.image,
            operation.to_revision,
            sent,
            state.etag,
            env={flag: "false"} if flag else None,  # the flag starts off
            base_revision=operation.from_revision,  # blue's settings, as it serves them
        )
        return name, sent

    return CHANGES.apply(deps, operation, send, then, purpose)


def cloud_failure(
    deps: Deps, operation: Operation, purpose: str, error: CloudRunError
) -> Operation:
    """A Cloud Run change failed: get to safety if green may have traffic, and say so."""
    detail = error.detail or error.reason
    deps.audit(
        BOT_ACTOR,
        f"cloudrun.{purpose}",
        "failed",
        service=operation.service,
        operation_id=operation.id,
        detail=detail,
    )
    if purpose in ("shift", "finalize") and operation.state != "rolling_back":
        return commit(
            deps,
            operation,
            "rolling_back",
            due_at=None,
            outcome={"code": f"{purpose}_failed", "detail": detail},
        )
    return end(deps, operation, "failed", {"code": f"{purpose}_failed", "detail": detail})


CHANGES = Changes(RECORD, "cloudrun.", cloud_failure, remember_expected=True)
