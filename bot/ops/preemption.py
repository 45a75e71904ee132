"""Who goes first on a service: an on-call engineer can always get to safety.

The rollback, release and flag workflows know nothing of each other; this module is where they
meet. An emergency rollback of a service with a release (or a flag flip) in progress stops it
(100% back to blue, or to the revision before the flip, by its own rules) instead of starting a
second operation on the service. A
rollback that holds the service's lock without moving traffic (waiting for a person, or left
by a crashed instance whose lease ran out) yields to the emergency; only an operation that an
instance is running right now in a traffic-changing state makes the service busy.
"""

from __future__ import annotations

from datetime import datetime

from bot.config import ServiceConfig
from bot.ops import flags, release, restore, rollback
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.rollback import RollbackRequest
from bot.store import TERMINAL_STATES, LockHolder, Operation

# A restore steps aside before its revision serves (its clone takes hours, traffic untouched),
# and goes back to the old revision once it serves (restore.take_back).
TAKE_BACK = {"release": release.roll_back, "flag": flags.roll_back, "restore": restore.take_back}

TRAFFIC_STATES = {
    "rollback": rollback.RUNNING_STATES,
    "release": release.RUNNING_STATES,
    "flag": flags.RUNNING_STATES,
}


def request_rollback(deps: Deps, request: RollbackRequest) -> Operation:
    """Validate, authorize and record a rollback (see ``rollback.create_rollback``), or, for an
    emergency on a service whose release is running, roll that release back to blue."""
    service, emergency = rollback.authorize_request(deps, request)
    holder = deps.store.lock_holder(service.name)
    return rollback_past(deps, request, service, emergency, holder)


def rollback_past(
    deps: Deps,
    request: RollbackRequest,
    service: ServiceConfig,
    emergency: bool,
    holder: LockHolder | None,
) -> Operation:
    """``request_rollback`` once authorized, ``holder`` being the service's lock holder as read
    a moment ago (it may have moved on since). An emergency that finds the service taken since
    by a release or a flip (it started in between) takes that back rather than being busy."""
    if emergency and holder is not None:
        if holder.state in TERMINAL_STATES:  # a crash between its end and its unlock
            deps.store.release_stale_locks()
        elif holder.kind in TAKE_BACK:
            taken = _take_back(deps, holder, request)
            if taken is not None:
                return taken
        elif not moving_traffic(holder, deps.clock.now()):
            rollback.yield_to(deps, holder.operation_id, request.user)
    try:
        return rollback.create_rollback(deps, request, service, emergency)
    except UserError as error:
        now_held = deps.store.lock_holder(service.name)
        if not (emergency and error.key == "error.busy" and _started_since(holder, now_held)):
            raise
    assert now_held is not None
    taken = _take_back(deps, now_held, request)
    return taken or rollback.create_rollback(deps, request, service, emergency)


def _started_since(seen: LockHolder | None, now_held: LockHolder | None) -> bool:
    """A release or flip that took the service after ``seen`` was read."""
    if now_held is None or now_held.kind not in TAKE_BACK:
        return False
    return seen is None or seen.operation_id != now_held.operation_id


def _take_back(deps: Deps, holder: LockHolder, request: RollbackRequest) -> Operation | None:
    """A release goes back to blue, a flag flip to the revision before it, by their own rules.
    None when it ended with its change kept between the lock's read and now (the watch or the
    last step passed): then an ordinary rollback takes the change back, rather than the
    on-call engineer being told that nothing was changed."""
    try:
        return TAKE_BACK[holder.kind](deps, holder.operation_id, request.user, request.reason)
    except UserError:
        ended = deps.store.operation(holder.operation_id)
        if ended is None or ended.state != "succeeded":
            raise
    deps.store.release_stale_locks()  # its unlock may not have followed its end yet
    return None


def moving_traffic(holder: LockHolder, now: datetime) -> bool:
    """An instance runs this operation right now (live lease) in a traffic-changing state, or
    it was approved a moment ago and no instance has picked it up yet (never leased: the
    request's own instance submits it now, and every instance's tick runs it). Taking that for
    a crash's leftover let two concurrent on-call rollbacks cancel each other."""
    live = holder.lease_until is not None and holder.lease_until > now
    unclaimed = holder.lease_until is None and holder.state == "approved"
    return (live or unclaimed) and holder.state in TRAFFIC_STATES.get(holder.kind, ())
