"""/deploy: validate, authorize and record a release; nothing changes in Cloud Run yet."""

from __future__ import annotations

import random
import re
import string
from dataclasses import replace
from typing import Any

from bot.config import Action, Approval, ServiceConfig
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.holding import open_holding
from bot.ops.release.readiness_gate import BLOCKED, check_release
from bot.ops.release.requested import ReleaseRequest
from bot.ops.release.states import KIND, ReleaseData, ReleaseMigration
from bot.ops.release.view import refresh
from bot.ops.release_migrations import migration_of, register_candidate
from bot.policy.approvals import Verdict, decide_request
from bot.policy.images import ImageRef, allowed_registries, check_image, in_registries, parse_image
from bot.policy.names import revision_name
from bot.policy.release_migrations import flag_problem, is_guarded
from bot.policy.targets import current_revision
from bot.ports import CloudRunError, Revision
from bot.store import Operation

IMAGE = re.compile(r"^[a-z0-9][a-z0-9.\-_/:@]{0,254}$")


class NeedsConfirmation(Exception):
    """The image needs the requester's explicit go-ahead (``:latest`` in production, say).
    Nothing was started; ``warnings`` say why."""

    def __init__(self, request: ReleaseRequest, warnings: tuple[str, ...]) -> None:
        super().__init__(request.image)
        self.request = request
        self.warnings = warnings


def request_release(deps: Deps, request: ReleaseRequest) -> Operation:
    """Validate, authorize and record a release; nothing changes in Cloud Run yet."""
    service = deps.config.service(request.service)
    if service is None:
        _refuse(deps, request, "unknown_service")
        raise UserError(
            "error.unknown_service", service=request.service, known=deps.config.service_names
        )
    image = parse_image(request.image) if IMAGE.fullmatch(request.image) else None
    if image is None or ".." in request.image:
        _refuse(deps, request, "bad_image")
        raise UserError("error.release.bad_image", image=request.image)
    _check_registry(deps, request, service, image)
    action = Action.CANARY if service.environment == "production" else Action.DEPLOY_STAGING
    in_incidents = request.channel == deps.config.channels.incidents.id
    decision = decide_request(deps.config.approvals, action, deps.roles(request.user), in_incidents)
    if request.from_ci and ci_may_start(deps, service):
        decision = replace(decision, verdict=Verdict.RUN, refusal=None)
    if not decision.allowed:
        _refuse(deps, request, str(decision.refusal))
        raise UserError(
            f"error.refused.{decision.refusal}",
            action=str(action),
            role=str(decision.required_role),
            channel=deps.config.channels.incidents.name,
        )
    migration = _migration(deps, request, service)
    holder = deps.store.operations.lock_holder(service.name)
    if holder is not None:
        _refuse(deps, request, "busy")
        raise UserError("error.busy", service=service.name, holder=holder)
    return _create(deps, request, service, image, migration)


def ci_may_start(deps: Deps, service: ServiceConfig) -> bool:
    """The matrix's deploy to staging "automatic when CI passes": CI starts staging releases
    itself when the row is automatic; production is only ever registered."""
    row = deps.config.approvals.row(Action.DEPLOY_STAGING)
    return service.environment == "staging" and row.approval is Approval.AUTO


def _migration(
    deps: Deps, request: ReleaseRequest, service: ServiceConfig
) -> dict[str, Any] | None:
    """The migration registered for exactly this image, with the flag it hides behind. A
    destructive (or unknown) one needs a valid ``FEATURE_FLAG_...`` name, or nothing starts."""
    if request.migration_sql is not None:  # the form's SQL becomes this image's candidate
        register_candidate(
            deps,
            service=service.name,
            image=request.image,
            sql=request.migration_sql,
            dialect="mysql" if request.dialect == "mysql" else "postgres",
            source="slack",
            by=request.user,
            flag=request.flag,
        )
    migration = migration_of(deps, service.name, request.image)
    if migration is None and request.flag:
        _refuse(deps, request, "flag_without_migration")
        raise UserError(
            "error.release.flag_without_migration", service=service.name, image=request.image
        )
    if migration is None:
        return None
    flag = request.flag or migration["flag"]
    problem = flag_problem(flag)
    if problem == "missing" and not is_guarded(migration["verdict"]):
        return migration  # an additive migration needs no flag
    if problem is not None:
        _refuse(deps, request, f"flag_{problem}")
        raise UserError(
            f"error.release.flag_{problem}",
            service=service.name,
            image=request.image,
            flag=flag,
            verdict=migration["verdict"],
            source=migration["source"],
            commit=migration["commit"],
        )
    return {**migration, "flag": flag}


def _check_registry(
    deps: Deps, request: ReleaseRequest, service: ServiceConfig, image: ImageRef
) -> None:
    """Production releases only images from the registries app.yaml allows."""
    allowed = registry_problem(deps, service, request.image, image)
    if allowed is not None:
        _refuse(deps, request, "registry")
        raise UserError(
            "error.release.registry", image=request.image, service=service.name, allowed=allowed
        )


def registry_problem(
    deps: Deps, service: ServiceConfig, name: str, image: ImageRef | None = None
) -> tuple[str, ...] | None:
    """The registries a production image must come from, when ``name`` is not from one of
    them (None when it may be released)."""
    if service.environment != "production":
        return None
    allowed = allowed_registries(
        service.registries, deps.config.release.registries, service.project, service.region
    )
    parsed = image or parse_image(name)
    return None if parsed is not None and in_registries(parsed, allowed) else tuple(allowed)


def _refuse(deps: Deps, request: ReleaseRequest, why: str) -> None:
    deps.audit(
        request.user,
        "release.refused",
        "refused",
        service=request.service,
        image=request.image[:300],
        why=why,
    )


def _create(
    deps: Deps,
    request: ReleaseRequest,
    service: ServiceConfig,
    image: ImageRef,
    migration: dict[str, Any] | None,
) -> Operation:
    ref = deps.service_ref(service)
    try:
        state, revisions = deps.cloudrun.get_service(ref), deps.cloudrun.list_revisions(ref)
    except CloudRunError as error:
        raise UserError(
            "error.cloudrun_unavailable", service=service.name, detail=error.detail or error.reason
        ) from None
    blue = current_revision(state.serving())
    if blue is None:
        raise UserError("error.target.not_serving", service=service.name, revision="", recent=[])
    green = next_revision_name(service.name, revisions)
    now = deps.clock.now()
    staging = service.environment == "staging"
    blue_image = next((r.image for r in revisions if r.name == blue), "")
    check = check_image(image, blue_image, production=not staging)
    warnings = tuple(str(w) for w in check.warnings)
    if check.needs_confirmation and not request.confirmed:
        deps.audit(
            request.user,
            "release.confirmation_asked",
            "pending",
            service=service.name,
            image=request.image,
            warnings=list(warnings),
        )
        raise NeedsConfirmation(request, warnings)
    readiness = check_release(deps, request, service)  # raises ReadinessBlocked on a ❌
    data = ReleaseData(
        image=request.image,
        requested_at=now.isoformat(),
        staging=staging,
        uri=state.uri,
        blue_image=blue_image,
        warnings=list(warnings),
        confirmed=request.confirmed and check.needs_confirmation,
        migration=ReleaseMigration.model_validate(migration) if migration else None,
        ci=request.from_ci,
        readiness=readiness,
        percents=[100] if staging else list(deps.config.release.steps),
    )
    operation = open_holding(
        deps,
        now,
        kind=KIND,
        service=service.name,
        requested_by=request.user,
        channel=request.channel,
        reason="",
        emergency=False,
        state="deploying",
        from_revision=blue,
        to_revision=green,
        data=data.stored(),
    )
    deps.audit(
        request.user,
        "release.requested",
        "ok",
        service=service.name,
        revision=green,
        operation_id=operation.id,
        image=request.image,
        approval="auto" if staging else "self",
        warnings=list(warnings),
        confirmed=request.confirmed,
        migration=(migration or {}).get("verdict", "none"),
        feature_flag=(migration or {}).get("flag", ""),
        from_ci=request.from_ci,
    )
    deps.store.journal.add_event(
        operation.id, now, "requested", actor=request.user, image=request.image
    )
    refresh(deps, operation.id)
    return deps.store.operations.operation(operation.id) or operation


def next_revision_name(service: str, revisions: list[Revision]) -> str:
    """``{service}-{NNNNN}-{abc}``, one past the highest number Cloud Run has used."""
    numbers = [
        int(m.group(1))
        for r in revisions
        if (m := re.fullmatch(rf"{re.escape(service)}-(\d+)(?:-\w+)?", r.name))
    ]
    suffix = "".join(random.choices(string.ascii_lowercase, k=3))
    return revision_name(service, f"{max(numbers, default=0) + 1:05d}-{suffix}")


def override(deps: Deps, blocked_id: int, user: str) -> Operation:
    """A click on the blocked release's override button: only who the matrix allows
    (``approvals.readiness_override``, a tech lead by default) releases past the ❌. What is
    released, and for whom, is the stored request the button names (``blocked_id``), never
    what the button says besides: the clicker speaks only for themselves."""
    request = blocked_request(deps, blocked_id, user)
    in_incidents = request.channel == deps.config.channels.incidents.id
    action = Action.READINESS_OVERRIDE
    decision = decide_request(deps.config.approvals, action, deps.roles(user), in_incidents)
    if not decision.allowed:
        deps.audit(
            user,
            "release.readiness_override",
            "refused",
            service=request.service,
            image=request.image[:300],
            why=str(decision.refusal),
        )
        raise UserError("readiness.override.refused", role=str(decision.required_role))
    return request_release(deps, replace(request, override_by=user))


def blocked_request(deps: Deps, blocked_id: int, user: str) -> ReleaseRequest:
    """The release request a checklist blocked, as its requester asked it (UserError when
    ``blocked_id`` names no such refusal)."""
    record = deps.store.journal.audit_record(blocked_id)
    if record is None or record.action != BLOCKED or record.outcome != "refused":
        deps.audit(user, "release.readiness_override", "refused", why="unknown_request")
        raise UserError("notice.unknown_request")
    detail = record.detail or {}
    return ReleaseRequest(
        service=record.service,
        image=str(detail.get("image") or ""),
        user=record.actor,
        channel=str(detail.get("channel") or ""),
        confirmed=bool(detail.get("confirmed")),
        flag=str(detail.get("flag") or ""),
    )
