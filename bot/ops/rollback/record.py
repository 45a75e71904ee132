"""Committing a rollback's progress (compare-and-set, then its card) with its typed data
(``RollbackData``), and its end: success, or a loud failure that offers the next steps."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from bot.ops.cards import announce
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import Superseded, UserError
from bot.ops.rollback.repeat import latest_ran, previous_view
from bot.ops.rollback.states import (
    KIND,
    RUNNING_STATES,
    STEP_OF_STATE,
    FailureFacts,
    RecoveryOffers,
    RollbackData,
    rollback_data,
)
from bot.ops.rollback.target import target_choice
from bot.ops.rollback.view import card_view, refresh
from bot.ops.stepping import Record
from bot.ports import CloudRunError
from bot.store import Operation


class RollbackRecord(Record):
    """The rollback's ``Record``: every write of its data is the rollback's data with the
    changes, validated as ``RollbackData``."""

    def finish(self, deps: Deps, operation_id: str, state: str, **changes: Any) -> Operation:
        """The rollback's last ``state`` with its data with ``changes``, its service's lock given
        back with it (compare-and-set on the rollback as read now), then the card. Each of its
        ends audits itself, as it says more than ``end`` would."""
        operation = deps.store.operations.operation(operation_id)
        assert operation is not None
        operation = self.write(deps, operation, state, release_lock=True, **changes)
        self.refresh(deps, operation_id, operation)
        return operation

    def merge(self, deps: Deps, operation: Operation, **changes: Any) -> Operation:
        """``changes`` (keys stored under their own names) merged into the rollback's stored
        data, validated as ``RollbackData`` first: for a rollback a person's act already moved
        (not compare-and-set; no other key is written)."""
        data = RollbackData.of(operation).changed(**changes).stored()
        written = {key: data[key] for key in (*changes, "version")}
        return deps.store.operations.merge_data(operation.id, deps.clock.now(), **written)


RECORD = RollbackRecord(KIND, refresh, RollbackData)
commit = RECORD.commit  # the next state and data together (compare-and-set), then the card
finish = RECORD.finish  # the last state and data together, the service's lock given back


def fail(deps: Deps, operation: Operation, code: str, step: str, **detail: Any) -> Operation:
    """End loudly, naming the traffic as it is now (read fresh, best effort)."""
    now = deps.clock.now()
    deps.store.operations.finish_step(operation.id, step, now, "failed", {"code": code, **detail})
    traffic_now = _traffic_now(deps, operation)
    deps.store.journal.add_event(operation.id, now, "failed", code=code, **detail)
    deps.audit(
        BOT_ACTOR,
        "rollback.failed",
        "failed",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        code=code,
        **detail,
    )
    offers = _recovery_offers(deps, operation) if code == "healthz_failed" else RecoveryOffers()
    error = FailureFacts(code=code, step=STEP_OF_STATE.get(step, step), **detail)
    failed = finish(
        deps, operation.id, "failed", error=error, traffic_now=traffic_now, offers=offers
    )
    _post_failure_alert(deps, failed)
    return failed


def _recovery_offers(deps: Deps, operation: Operation) -> RecoveryOffers:
    """After a failed health check on the target: the revision that served before, and the
    next candidate back (what a rollback without a revision would now pick, skipping both)."""
    offers = RecoveryOffers(previous=operation.from_revision)
    service = deps.config.service(operation.service)
    if service is None:
        return offers
    try:
        revisions = deps.cloudrun.list_revisions(deps.service_ref(service))
    except CloudRunError:
        return offers
    tried = frozenset({operation.to_revision, operation.from_revision})
    serving = {operation.to_revision: 100}
    choice = target_choice(deps, operation.service, revisions, serving, None, True, also_bad=tried)
    found = choice.revision.name if choice.revision and not choice.problem else ""
    return RecoveryOffers(previous=operation.from_revision, next=found)


def check_recovery_offer(deps: Deps, operation_id: str, revision: str, user: str) -> Operation:
    """A click on a failed rollback's "back to ..." button: still the newest rollback of its
    service, and ``revision`` one it offered. Returns the failed operation; UserError if stale."""
    operation = deps.store.operations.operation(operation_id)
    offers = rollback_data(operation).offers
    if operation is None or not revision or revision not in offers.revisions():
        raise UserError("notice.unknown_request")
    latest = latest_ran(deps, operation.service)
    holder = deps.store.operations.lock_holder(operation.service)
    if (latest is not None and latest.id != operation.id) or holder is not None:
        deps.audit(
            user,
            "rollback.refused",
            "refused",
            service=operation.service,
            revision=revision,
            why="stale",
            operation_id=operation.id,
        )
        newer = latest if latest is not None and latest.id != operation.id else None
        raise UserError(
            "notice.recovery_stale",
            service=operation.service,
            latest=previous_view(newer) if newer else None,
            holder=holder,
        )
    return operation


def _traffic_now(deps: Deps, operation: Operation) -> dict[str, int] | None:
    service = deps.config.service(operation.service)
    if service is None:
        return None
    try:
        return deps.cloudrun.get_service(deps.service_ref(service)).serving()
    except CloudRunError:
        return None


def _post_failure_alert(deps: Deps, operation: Operation) -> None:
    """A new message, not only the card's update: a failure must notify the channel."""
    message = deps.renderer.message("rollback_failed", op=card_view(deps, operation))
    announce(deps, operation.channel, message)


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    """A bug must not leave an operation silently half-done: end it loudly."""
    operation = deps.store.operations.operation(operation_id)
    if operation is not None and operation.state in RUNNING_STATES:
        with suppress(Superseded):  # moved on meanwhile: what it is now stands
            fail(deps, operation, "internal", operation.state)
