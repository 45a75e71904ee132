"""A second `/rollback SERVICE` soon after one: show what the last one did and ask first."""

from __future__ import annotations

from typing import Any, NoReturn

from bot.config import ServiceConfig
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.rollback.requested import RepeatNeedsConfirmation, RollbackRequest
from bot.ops.rollback.states import KIND, RAN_STATES, RollbackData
from bot.ops.rollback.target import read_service, revision_view, target_choice
from bot.policy.targets import (
    TargetChoice,
    within_repeat_window,
)
from bot.store import Operation


def ask_if_repeated(
    deps: Deps,
    request: RollbackRequest,
    service: ServiceConfig,
    choice: TargetChoice,
) -> None:
    """Another rollback without a revision would go one more revision back: ask first. (A
    retry of one that failed before moving traffic picks the same target: no question.)"""
    previous = latest_ran(deps, service.name)
    window = deps.config.rollback.repeat_window_minutes
    assert choice.revision is not None
    if previous is None:
        return
    if not within_repeat_window(previous.finished_at, deps.clock.now(), window):
        return
    if choice.revision.name == previous.to_revision:
        return
    deps.audit(
        request.user,
        "rollback.confirmation_requested",
        "pending",
        service=service.name,
        revision=choice.revision.name,
        after_operation=previous.id,
    )
    raise RepeatNeedsConfirmation(
        service=service.name,
        user=request.user,
        reason=request.reason,
        previous=previous_view(previous),
        target=revision_view(deps, choice.revision),
        window_minutes=window,
    )


def latest_ran(deps: Deps, service: str) -> Operation | None:
    """The newest rollback of ``service`` that ran (see ``RAN_STATES``)."""
    return deps.store.operations.latest_operation(service, KIND, RAN_STATES)


def previous_view(operation: Operation) -> dict[str, Any]:
    return {
        "id": operation.id,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "automatic": RollbackData.of(operation).automatic,
        "finished_at": operation.finished_at,
        "from_revision": operation.from_revision,
        "to_revision": operation.to_revision,
    }


def check_repeat_still_current(
    deps: Deps, service_name: str, revision: str, after_operation: str, user: str
) -> None:
    """At the confirm click: the revision asked about must still be the one a rollback would
    pick, and no other rollback may have run since. Raises UserError (audited) otherwise."""
    service = deps.config.service(service_name)
    latest = latest_ran(deps, service_name)
    if service is None or latest is None or latest.id != after_operation:
        _stale_confirmation(deps, user, service_name, revision, latest)
    assert service is not None
    state, revisions = read_service(deps, service, user)
    choice = target_choice(deps, service_name, revisions, state.serving(), None, automatic=False)
    if choice.problem is not None or choice.revision is None or choice.revision.name != revision:
        _stale_confirmation(deps, user, service_name, revision, latest, choice)


def _stale_confirmation(
    deps: Deps,
    user: str,
    service: str,
    revision: str,
    latest: Operation | None,
    choice: TargetChoice | None = None,
) -> NoReturn:
    deps.audit(user, "rollback.refused", "refused", service=service, revision=revision, why="stale")
    now_pick = choice.revision.name if choice and choice.revision and not choice.problem else ""
    raise UserError(
        "notice.repeat_stale",
        service=service,
        revision=revision,
        latest=previous_view(latest) if latest else None,
        now_pick=now_pick,
    )
