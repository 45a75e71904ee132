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

from bot.ops import flags, release, rollback
from bot.ops.context import Deps
from bot.ops.rollback import RollbackRequest
from bot.store import TERMINAL_STATES, LockHolder, Operation

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
    if emergency and holder is not None:
        if holder.state in TERMINAL_STATES:  # a crash between its end and its unlock
            deps.store.release_stale_locks()
        elif holder.kind == "release":
            return release.roll_back(deps, holder.operation_id, request.user, request.reason)
        elif holder.kind == "flag":  # back to the revision before the flip, by its own rules
            return flags.roll_back(deps, holder.operation_id, request.user, request.reason)
        elif not moving_traffic(holder, deps.clock.now()):
            rollback.yield_to(deps, holder.operation_id, request.user)
    return rollback.create_rollback(deps, request, service, emergency)


def moving_traffic(holder: LockHolder, now: datetime) -> bool:
    """An instance runs this operation right now (live lease) in a traffic-changing state, or
    it was approved a moment ago and no instance has picked it up yet (never leased: the
    request's own instance submits it now, and every instance's tick runs it). Taking that for
    a crash's leftover let two concurrent on-call rollbacks cancel each other."""
    live = holder.lease_until is not None and holder.lease_until > now
    unclaimed = holder.lease_until is None and holder.state == "approved"
    return (live or unclaimed) and holder.state in TRAFFIC_STATES.get(holder.kind, ())
