"""/deploy: validate, authorize and record a release; nothing changes in Cloud Run yet."""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

from bot.config import Action, ServiceConfig
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.release.readiness_gate import check_release
from bot.ops.release.view import refresh
from bot.policy.approvals import decide_request
from bot.policy.images import ImageRef, allowed_registries, check_image, in_registries, parse_image
from bot.policy.targets import current_revision
from bot.ports import CloudRunError, Revision
from bot.store import Operation

IMAGE = re.compile(r"^[a-z0-9][a-z0-9.\-_/:@]{0,254}$")


@dataclass(frozen=True)
class ReleaseRequest:
    service: str
    image: str
    user: str
    channel: str
    confirmed: bool = False  # the requester saw the image's warnings and clicked to go on
    override_by: str = ""  # a tech lead who released past a ❌ of the readiness checklist


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
    if not decision.allowed:
        _refuse(deps, request, str(decision.refusal))
        raise UserError(
            f"error.refused.{decision.refusal}",
            action=str(action),
            role=str(decision.required_role),
            channel=deps.config.channels.incidents.name,
        )
    holder = deps.store.lock_holder(service.name)
    if holder is not None:
        _refuse(deps, request, "busy")
        raise UserError("error.busy", service=service.name, holder=holder)
    return _create(deps, request, service, image)


def _check_registry(
    deps: Deps, request: ReleaseRequest, service: ServiceConfig, image: ImageRef
) -> None:
    """Production releases only images from the registries app.yaml allows."""
    if service.environment != "production":
        return
    allowed = allowed_registries(
        service.registries, deps.config.release.registries, service.project, service.region
    )
    if not in_registries(image, allowed):
        _refuse(deps, request, "registry")
        raise UserError(
            "error.release.registry", image=request.image, service=service.name, allowed=allowed
        )


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
    deps: Deps, request: ReleaseRequest, service: ServiceConfig, image: ImageRef
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
    operation = deps.store.create_operation(
        now,
        kind="release",
        service=service.name,
        requested_by=request.user,
        channel=request.channel,
        reason="",
        emergency=False,
        state="deploying",
        from_revision=blue,
        to_revision=green,
        data={
            "image": request.image,
            "staging": staging,
            "uri": state.uri,
            "steps": [100] if staging else list(deps.config.release.steps),
            "step": -1,
            "history": [],
            "judgements": [],
            "blue_image": blue_image,
            "requested_at": now.isoformat(),
            "warnings": list(warnings),
            "confirmed": request.confirmed and check.needs_confirmation,
            "readiness": readiness,
        },
    )
    if not deps.store.acquire_lock(service.name, operation.id, now):
        deps.store.update_operation(operation.id, now, state="cancelled")
        raise UserError(
            "error.busy", service=service.name, holder=deps.store.lock_holder(service.name)
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
    )
    deps.store.add_event(operation.id, now, "requested", actor=request.user, image=request.image)
    refresh(deps, operation.id)
    return deps.store.operation(operation.id) or operation


def next_revision_name(service: str, revisions: list[Revision]) -> str:
    """``{service}-{NNNNN}-{abc}``, one past the highest number Cloud Run has used."""
    numbers = [
        int(m.group(1))
        for r in revisions
        if (m := re.fullmatch(rf"{re.escape(service)}-(\d+)(?:-\w+)?", r.name))
    ]
    suffix = "".join(random.choices(string.ascii_lowercase, k=3))
    return f"{service}-{max(numbers, default=0) + 1:05d}-{suffix}"
