"""A production release meets the rollback-readiness checklist first: the card shows it, and a
❌ blocks the release unless a tech lead overrides it (audited). Staging releases are not
checked. The checklist is gathered concurrently within ``readiness.deadline_s``; an item that
is not in by then is ⚠️, which never blocks and never passes.
"""

from __future__ import annotations

from typing import Any

from bot.config import ServiceConfig
from bot.ops.context import Deps
from bot.ops.readiness import checklist_view, gather_checklist
from bot.ops.release.requested import ReleaseRequest
from bot.policy.readiness import failing

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
