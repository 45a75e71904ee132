"""/flag SERVICE NAME on|off [reason]: validate, authorize and record a flip; nothing changes in
Cloud Run yet. Every refusal is audited and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import ServiceConfig
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.flags.record import event
from bot.ops.flags.states import KIND, FlagBefore, FlagData
from bot.ops.flags.view import refresh
from bot.ops.holding import open_holding
from bot.ops.release import next_revision_name
from bot.policy.flags import (
    FlagName,
    decide_flip,
    env_text,
    flags_in_env,
    flip_problem,
    parse_flag_name,
    parse_switch,
    similar_flags,
    suggested_name,
)
from bot.ports import CloudRunError, Revision, ServiceState
from bot.store import Operation

MAX_REASON = 500


@dataclass(frozen=True)
class FlagRequest:
    service: str
    name: str  # as typed: NEW_CHECKOUT or FEATURE_FLAG_NEW_CHECKOUT
    switch: str  # as typed: on | off
    reason: str
    user: str
    channel: str
    new: bool = False  # confirmed as a new flag (`--new`): no serving revision has it yet


def request_flip(deps: Deps, request: FlagRequest) -> Operation:
    """Validate, authorize and record the flip (see the module docstring). Raises UserError."""
    service = known_service(deps, request.service, request.user)
    flag, value = _parsed(deps, request)
    in_incidents = request.channel == deps.config.channels.incidents.id
    decision = decide_flip(
        deps.config.approvals, service.environment, deps.roles(request.user), in_incidents
    )
    if not decision.allowed:
        _refuse(deps, request, str(decision.refusal))
        raise UserError(
            f"error.refused.{decision.refusal}",
            action=str(decision.action),
            role=str(decision.required_role),
            channel=deps.config.channels.incidents.name,
        )
    holder = deps.store.operations.lock_holder(service.name)
    if holder is not None:
        _refuse(deps, request, "busy")
        raise UserError("error.busy", service=service.name, holder=holder)
    state, revisions = _read(deps, service)
    serving = _the_one_serving(deps, request, state, revisions)
    known = flags_in_env(serving.env)
    current = known.get(flag.name)
    problem = flip_problem(current, value, confirmed_new=request.new)
    if problem is not None:
        _refuse(deps, request, str(problem))
        raise UserError(
            f"error.flag.{problem}",
            service=service.name,
            flag=flag.name,
            value=value,
            revision=serving.name,
            env=flag.env,
            similar=similar_flags(flag.name, known),
            switch=request.switch.lower(),
            reason=request.reason,
        )
    return _create(deps, request, service, flag, value, state, serving, revisions)


def known_service(deps: Deps, name: str, user: str) -> ServiceConfig:
    service = deps.config.service(name)
    if service is None:
        deps.audit(user, "flag.refused", "refused", service=name[:64], why="unknown_service")
        raise UserError("error.unknown_service", service=name, known=deps.config.service_names)
    return service


def _parsed(deps: Deps, request: FlagRequest) -> tuple[FlagName, bool]:
    flag = parse_flag_name(request.name)
    if not isinstance(flag, FlagName):
        _refuse(deps, request, f"bad_name:{flag}")
        raise UserError(
            "error.flag.bad_name",
            name=request.name,
            problem=str(flag),
            suggestion=suggested_name(request.name),
        )
    value = parse_switch(request.switch)
    if value is None:
        _refuse(deps, request, "bad_switch")
        raise UserError("error.flag.bad_switch", switch=request.switch, flag=flag.name)
    return flag, value


def _read(deps: Deps, service: ServiceConfig) -> tuple[ServiceState, list[Revision]]:
    ref = deps.service_ref(service)
    try:
        return deps.cloudrun.get_service(ref), deps.cloudrun.list_revisions(ref)
    except CloudRunError as error:
        raise UserError(
            "error.cloudrun_unavailable", service=service.name, detail=error.detail or error.reason
        ) from None


def _the_one_serving(
    deps: Deps, request: FlagRequest, state: ServiceState, revisions: list[Revision]
) -> Revision:
    """A flip starts from the revision serving 100%: with a split there is no one previous
    revision to come back to."""
    serving = state.serving()
    if len(serving) != 1 or state.reconciling:
        _refuse(deps, request, "split")
        raise UserError("error.flag.split", service=request.service, serving=serving)
    (name,) = serving
    found = next((r for r in revisions if r.name == name), None)
    if found is None:
        raise UserError("error.cloudrun_unavailable", service=request.service, detail=name)
    return found


def _refuse(deps: Deps, request: FlagRequest, why: str) -> None:
    deps.audit(
        request.user,
        "flag.refused",
        "refused",
        service=request.service,
        flag=request.name[:120],
        switch=request.switch[:20],
        why=why,
    )


def _create(
    deps: Deps,
    request: FlagRequest,
    service: ServiceConfig,
    flag: FlagName,
    value: bool,
    state: ServiceState,
    serving: Revision,
    revisions: list[Revision],
) -> Operation:
    now = deps.clock.now()
    current = flags_in_env(serving.env).get(flag.name)
    data = FlagData(
        flag=flag.name,
        env=flag.env,
        value=value,
        text=env_text(value),
        before=FlagBefore(text=current.text, value=current.value) if current else None,
        uri=state.uri,
    )
    operation = open_holding(
        deps,
        now,
        kind=KIND,
        service=service.name,
        requested_by=request.user,
        channel=request.channel,
        reason=request.reason[:MAX_REASON],
        emergency=False,
        state="deploying",
        from_revision=serving.name,
        to_revision=next_revision_name(service.name, revisions),
        data=data.stored(),
    )
    deps.audit(
        request.user,
        "flag.requested",
        "ok",
        service=service.name,
        revision=operation.to_revision,
        operation_id=operation.id,
        flag=flag.name,
        value=value,
        previous=serving.name,
        reason=operation.reason,
        approval="auto" if service.environment == "staging" else "self",
    )
    event(deps, operation, "requested", actor=request.user, reason=operation.reason)
    refresh(deps, operation.id)
    return deps.store.operations.operation(operation.id) or operation
