"""Starting a drill: on a staging service only, never while another operation holds it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.config import Action, ServiceConfig
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.drill.states import KIND, DrillData
from bot.ops.drill.view import refresh
from bot.ops.errors import UserError
from bot.ops.holding import open_holding
from bot.ops.stepping import write_step
from bot.policy.approvals import decide_request
from bot.policy.names import revision_name
from bot.store import Operation


def request_drill(
    deps: Deps,
    service_name: str | None,
    user: str,
    channel: str,
    slot: str | None = None,
) -> Operation:
    """Validate, authorize and record a drill (``user`` is BOT_ACTOR for the scheduled one,
    whose ``slot`` makes it start once however many ticks race for it). Raises UserError,
    with nothing changed, on a refusal (audited)."""
    name = service_name or deps.config.drill_service
    service = _drill_service(deps, name, user)
    if user != BOT_ACTOR:
        _authorize(deps, service, user, channel)
    return _create(deps, service, user, slot)


def _refuse(deps: Deps, user: str, service: str, why: str, **detail: Any) -> None:
    deps.audit(user, "drill.refused", "refused", service=service, why=why, **detail)


def _drill_service(deps: Deps, name: str, user: str) -> ServiceConfig:
    service = deps.config.service(name) if name else None
    if service is None:
        _refuse(deps, user, name, "unknown_service")
        if not name:
            raise UserError("drill.error.no_staging")
        raise UserError("error.unknown_service", service=name, known=deps.config.service_names)
    if service.environment == "production":
        _refuse(deps, user, name, "production")
        raise UserError("drill.error.production", service=name)
    return service


def _authorize(deps: Deps, service: ServiceConfig, user: str, channel: str) -> None:
    in_incidents = channel == deps.config.channels.incidents.id
    decision = decide_request(deps.config.approvals, Action.DRILL, deps.roles(user), in_incidents)
    if not decision.allowed:
        _refuse(deps, user, service.name, str(decision.refusal))
        raise UserError(
            f"error.refused.{decision.refusal}",
            action=str(decision.action),
            role=str(decision.required_role),
            channel=deps.config.channels.incidents.name,
        )


def drill_revision_name(service: str, now: datetime) -> str:
    """``wa-backend-staging-drill-20261130-091500``: always a valid revision name
    (bot/policy/names.py)."""
    return revision_name(service, f"drill-{now:%Y%m%d-%H%M%S}")


def _open(deps: Deps, user: str, now: datetime, **fields: Any) -> Operation:
    try:
        return open_holding(deps, now, **fields)
    except UserError:
        _refuse(deps, user, fields["service"], "busy")
        raise


def _create(deps: Deps, service: ServiceConfig, user: str, slot: str | None) -> Operation:
    store, now = deps.store, deps.clock.now()
    holder = store.operations.lock_holder(service.name)
    if holder is not None:
        _refuse(deps, user, service.name, "busy", operation_id=holder.operation_id)
        raise UserError("error.busy", service=service.name, holder=holder)
    # "starting" is no running state: no tick runs the drill before it holds its record; a
    # crash in between leaves a "starting" drill that the schedule's tick ends
    operation = _open(
        deps,
        user,
        now,
        kind=KIND,
        service=service.name,
        requested_by=user,
        channel=deps.config.team_channel,
        reason="",
        emergency=False,
        state="starting",
        to_revision=drill_revision_name(service.name, now),
        data=DrillData(
            requested_at=now.isoformat(), trigger="schedule" if slot else "command"
        ).stored(),
    )
    record = store.drills.create_drill(
        now,
        service=service.name,
        slot=slot,
        trigger="schedule" if slot else "command",
        requested_by=user,
        outcome="running",
        operation_id=operation.id,
        detail={"log": []},
    )
    if record is None:  # another instance started this scheduled drill first
        store.operations.update_operation(operation.id, now, state="cancelled")
        store.operations.release_lock(service.name, operation.id)
        raise UserError("drill.error.already_started", service=service.name)
    data = DrillData.of(operation).changed(drill_id=record.id)
    operation = write_step(deps, operation, "deploying", data.stored())
    deps.audit(
        user,
        "drill.requested",
        "ok",
        service=service.name,
        revision=operation.to_revision,
        operation_id=operation.id,
        trigger=record.trigger,
    )
    store.journal.add_event(operation.id, now, "requested", actor=user)
    refresh(deps, operation.id)
    return store.operations.operation(operation.id) or operation
