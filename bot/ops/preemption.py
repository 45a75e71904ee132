"""Who goes first on a service: an on-call engineer can always get to safety.

The rollback and release workflows know nothing of each other; this module is where they meet.
An emergency rollback of a service with a release in progress stops that release (100% back to
blue, by the release's own rules) instead of starting a second operation on the service.
"""

from __future__ import annotations

from bot.ops import release, rollback
from bot.ops.context import Deps
from bot.ops.rollback import RollbackRequest
from bot.store import Operation


def request_rollback(deps: Deps, request: RollbackRequest) -> Operation:
    """Validate, authorize and record a rollback (see ``rollback.create_rollback``), or, for an
    emergency on a service whose release is running, roll that release back to blue."""
    service, emergency = rollback.authorize_request(deps, request)
    holder = deps.store.lock_holder(service.name)
    if emergency and holder is not None and holder.kind == "release":
        return release.roll_back(deps, holder.operation_id, request.user, request.reason)
    return rollback.create_rollback(deps, request, service, emergency)
