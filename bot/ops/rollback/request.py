"""/rollback: authorize, choose the target and record the operation (approved or pending)."""

from __future__ import annotations

from typing import Any, NoReturn

from bot.config import Action, ServiceConfig
from bot.ops.approvals import request_approval
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.release_migrations import rollback_crossing
from bot.ops.rollback.record import finish
from bot.ops.rollback.repeat import ask_if_repeated, latest_ran
from bot.ops.rollback.requested import RollbackRequest
from bot.ops.rollback.states import (
    KIND,
    RAN_STATES,
    GuardedMigration,
    RevisionFacts,
    RollbackData,
    SkippedRevision,
)
from bot.ops.rollback.target import pick_target, read_service, resolve_revision_word, revision_view
from bot.ops.rollback.view import refresh
from bot.policy.approvals import Decision, Verdict, decide_rollback
from bot.policy.targets import (
    TargetChoice,
)
from bot.ports import Revision, ServiceState
from bot.store import LockHolder, NewerOperation, Newest, Operation, ServiceHeld, new_id


def authorize_request(deps: Deps, request: RollbackRequest) -> tuple[ServiceConfig, bool]:
    """The service asked for, and whether the request is an emergency (runs at once).

    Raises UserError, with nothing changed, on an unknown service or a refusal (audited).
    """
    service = _known_service(deps, request)
    emergency = request.automatic or _authorize(deps, request, service).verdict is Verdict.RUN
    return service, emergency


def create_rollback(
    deps: Deps,
    request: RollbackRequest,
    service: ServiceConfig,
    emergency: bool,
    _again: bool = True,
) -> Operation:
    """Choose the target and record the rollback; returns the operation (approved or pending).

    Raises UserError, with nothing changed, on bad input or a busy service (audited).
    """
    _check_not_busy(
        deps, service.name, request.user, emergency, request.parent or request.takes_over
    )
    seen = _newest_ran(deps, service.name)
    state, revisions = read_service(deps, service, request.user)
    request = resolve_revision_word(deps, request, service, revisions)
    choice, current = pick_target(deps, request, service, state, revisions)
    repeat_rule = request.from_command and request.revision is None
    if repeat_rule:
        ask_if_repeated(deps, request, service, choice)
    assert choice.revision is not None
    guard = rollback_crossing(deps, service.name, choice.revision, revisions, state.serving())
    if guard:  # not an emergency: the old code would fail on the schema (see _guarded)
        emergency = False
    # An emergency asked without a revision must be decided on the rollbacks that ended
    # before it holds the service (see _RanMeanwhile): checked once it holds the lock.
    unchanged = seen if (_again and emergency and repeat_rule) else None
    try:
        operation = _create_operation(
            deps, request, service, emergency, state, revisions, choice, current, guard, unchanged
        )
    except _RanMeanwhile:
        return create_rollback(deps, request, service, emergency, _again=False)
    if emergency:
        deps.audit(
            request.user,
            "rollback.approved",
            "ok",
            service=service.name,
            revision=operation.to_revision,
            operation_id=operation.id,
            approval="incident_policy" if request.automatic else "self",
        )
    refresh(deps, operation.id)
    return deps.store.operations.operation(operation.id) or operation


class _RanMeanwhile(Exception):
    """Another rollback of the service ended between this request's read and its lock (20
    on-call engineers pressing at once, some of them answered late): its choice was made
    without what that rollback did, so it is decided again (then it asks, as a repeat)."""


def _newest_ran(deps: Deps, service: str) -> Newest:
    latest = latest_ran(deps, service)
    return Newest(KIND, RAN_STATES, latest.id if latest else None)


def _known_service(deps: Deps, request: RollbackRequest) -> ServiceConfig:
    service = deps.config.service(request.service)
    if service is None:
        deps.audit(
            request.user,
            "rollback.refused",
            "refused",
            service=request.service,
            why="unknown_service",
        )
        raise UserError(
            "error.unknown_service", service=request.service, known=deps.config.service_names
        )
    return service


def _authorize(deps: Deps, request: RollbackRequest, service: ServiceConfig) -> Decision:
    in_incidents = request.channel == deps.config.channels.incidents.id
    decision = decide_rollback(deps.config.approvals, deps.roles(request.user), in_incidents)
    if not decision.allowed:
        deps.audit(
            request.user,
            "rollback.refused",
            "refused",
            service=service.name,
            why=str(decision.refusal),
            required_role=str(decision.required_role),
        )
        raise UserError(
            f"error.refused.{decision.refusal}",
            action=str(decision.action),
            role=str(decision.required_role),
            channel=deps.config.channels.incidents.name,
        )
    return decision


def _check_not_busy(deps: Deps, service: str, user: str, emergency: bool, parent: str) -> None:
    holder = deps.store.operations.lock_holder(service)
    if holder is None or (emergency and holder.state == "awaiting_approval"):
        return
    if parent and holder.operation_id == parent:
        return
    _refuse_busy(deps, service, user, holder)


def _create_operation(
    deps: Deps,
    request: RollbackRequest,
    service: ServiceConfig,
    emergency: bool,
    state: ServiceState,
    revisions: list[Revision],
    choice: TargetChoice,
    current: str | None,
    guard: list[dict[str, Any]],
    unchanged: Newest | None = None,
) -> Operation:
    now = deps.clock.now()
    by_name = {r.name: r for r in revisions}
    target = choice.revision
    assert target is not None
    fields = dict(
        id=new_id(),  # known before its row: a request it supersedes names it
        kind=KIND,
        service=service.name,
        requested_by=request.user,
        channel=request.channel,
        reason=request.reason,
        emergency=emergency,
        state="approved" if emergency else "awaiting_approval",
        from_revision=current or "",
        to_revision=target.name,
        data=RollbackData(
            from_=RevisionFacts(**revision_view(deps, by_name.get(current or ""))),
            to=RevisionFacts(**revision_view(deps, target)),
            serving_before=state.serving(),
            uri=state.uri,
            requested_at=now.isoformat(),
            automatic=request.automatic,
            drill=request.parent,
            skipped=[
                SkippedRevision(revision=name, why=by_name[name].ready_message)
                for name in choice.skipped
            ],
            migration_guard=[GuardedMigration(**crossed) for crossed in guard],
            took_over=request.takes_over,
            drop_tags=[request.drop_tag] if request.drop_tag else [],
        ).stored(),
    )
    operation = _open(deps, fields, emergency, request, unchanged)
    deps.store.journal.add_event(
        operation.id, now, "requested", actor=request.user, target=target.name, emergency=emergency
    )
    deps.audit(
        request.user,
        "rollback.requested",
        "ok",
        service=service.name,
        revision=target.name,
        operation_id=operation.id,
        emergency=emergency,
        reason=request.reason,
        **({"skipped_not_ready": list(choice.skipped)} if choice.skipped else {}),
    )
    if guard:
        _guarded(deps, request, operation, guard)
    elif not emergency:
        request_approval(deps, operation.id, Action.SCHEDULED_ROLLBACK, request.user)
    return operation


def _guarded(
    deps: Deps, request: RollbackRequest, operation: Operation, guard: list[dict[str, Any]]
) -> None:
    """Going back past a revision that shipped a destructive migration is refused as an
    emergency: the old code would fail on today's schema (the runbook's remedy is turning the
    feature flag off). It waits for the approval of ``rollback_past_migration``: by default a
    tech lead other than the requester, since "no permitidas sin aprobación" asks for a second
    person's judgement, which an on-call tech lead's own click would not be."""
    deps.audit(
        request.user,
        "rollback.refused_as_emergency",
        "refused",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        why="past_destructive_migration",
        past=[c["revision"] for c in guard],
        flags=[c["flag"] for c in guard if c["flag"]],
        automatic=request.automatic,
    )
    request_approval(deps, operation.id, Action.ROLLBACK_PAST_MIGRATION, request.user)


def _refuse_busy(deps: Deps, service: str, user: str, holder: LockHolder | None) -> NoReturn:
    deps.audit(
        user,
        "rollback.refused",
        "refused",
        service=service,
        why="busy",
        operation_id=holder.operation_id if holder else "",
    )
    raise UserError("error.busy", service=service, holder=holder)


def _open(
    deps: Deps,
    fields: dict[str, Any],
    emergency: bool,
    request: RollbackRequest,
    unchanged: Newest | None,
) -> Operation:
    """Record the rollback holding its service (see Operations.open_operation): handed over by the
    drill that started it or the operation that stood aside for it, else taken. An emergency
    finding a request that waits for a person supersedes it. Raises UserError when busy,
    _RanMeanwhile when a rollback ended since the request's read."""
    store, service, user = deps.store, fields["service"], fields["requested_by"]
    handing = request.parent or request.takes_over
    for attempt in range(2):
        try:
            return store.operations.open_operation(
                deps.clock.now(), take_over_from=handing, unchanged=unchanged, **fields
            )
        except NewerOperation:
            raise _RanMeanwhile from None
        except ServiceHeld:
            if request.takes_over and handing:  # it stood aside and ended: a tick may have
                handing = ""  # freed its lock in between; then the service is taken
                continue
            holder = store.operations.lock_holder(service)
            pending = holder is not None and holder.state == "awaiting_approval"
            if handing or attempt or not (emergency and pending):
                _refuse_busy(deps, service, user, holder)
            assert holder is not None
            _supersede(deps, holder.operation_id, user, service, fields["id"])
    holder = store.operations.lock_holder(service)
    _refuse_busy(deps, service, user, holder)


def _supersede(deps: Deps, pending_id: str, user: str, service: str, by_operation: str) -> None:
    """An on-call engineer must always get to safety: a pending request yields to them."""
    approval = deps.store.approvals.approval_for(pending_id)
    now = deps.clock.now()
    if approval is None or not deps.store.approvals.decide_approval(
        approval.id, "cancelled", user, now
    ):
        return
    finish(deps, pending_id, "cancelled", superseded_by=by_operation)
    deps.audit(
        user,
        "rollback.superseded",
        "ok",
        service=service,
        operation_id=pending_id,
        by_operation=by_operation,
    )
