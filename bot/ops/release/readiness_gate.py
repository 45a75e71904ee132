"""A production release meets the rollback-readiness checklist first: the card shows it, and a
❌ blocks the release unless a tech lead overrides it (audited). Staging releases are not
checked. The checklist is gathered concurrently within ``readiness.deadline_s``; an item that
is not in by then is ⚠️, which never blocks and never passes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bot.config import Action, ServiceConfig
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.readiness import checklist_view, gather_checklist
from bot.policy.approvals import decide_request
from bot.policy.readiness import failing
from bot.store import Operation

if TYPE_CHECKING:
    from bot.ops.release.request import ReleaseRequest

BLOCKED = "release.blocked"  # the audited refusal that keeps a blocked request


class ReadinessBlocked(Exception):
    """A ❌ on the checklist: nothing was started. ``checklist`` is what to show (with an
    override button for a tech lead); ``blocked_id``, the stored refusal that button names."""

    def __init__(self, request: ReleaseRequest, checklist: dict[str, Any], blocked_id: int) -> None:
        super().__init__(request.service)
        self.request = request
        self.checklist = checklist
        self.blocked_id = blocked_id


def check_release(
    deps: Deps, request: ReleaseRequest, service: ServiceConfig
) -> dict[str, Any] | None:
    """The checklist to show on a production release's card (None for staging). Raises
    ReadinessBlocked on a ❌ unless ``request.override_by`` (a tech lead) overrode it."""
    if service.environment != "production":
        return None
    items = gather_checklist(deps, service)
    checklist = checklist_view(items)
    failed = [item.key for item in failing(items)]
    if failed and not request.override_by and deps.config.readiness.block_production:
        # the request as asked, kept: an override releases exactly this, for this requester
        blocked_id = deps.audit(
            request.user,
            BLOCKED,
            "refused",
            service=service.name,
            image=request.image[:300],
            failing=failed,
            channel=request.channel,
            confirmed=request.confirmed,
            flag=request.flag,
        )
        raise ReadinessBlocked(request, checklist, blocked_id)
    if failed and request.override_by:
        deps.audit(
            request.override_by,
            "release.readiness_override",
            "ok",
            service=service.name,
            image=request.image[:300],
            failing=failed,
            requester=request.user,
        )
        checklist["override_by"] = request.override_by
    return checklist


def override(deps: Deps, blocked_id: int, user: str) -> Operation:
    """A click on the blocked release's override button: only who the matrix allows
    (``approvals.readiness_override``, a tech lead by default) releases past the ❌. What is
    released, and for whom, is the stored request the button names (``blocked_id``), never
    what the button says besides: the clicker speaks only for themselves."""
    from bot.ops.release.request import request_release

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
    from bot.ops.release.request import ReleaseRequest

    record = deps.store.audit_record(blocked_id)
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
