"""Who goes first on a service: an on-call engineer can always get to safety.

The rollback, release, flag and drill workflows know nothing of each other; this module is
where they meet. An on-call engineer's emergency rollback asks to leave the revision serving
now, whatever holds the service:

- a release, flag flip or drill whose new revision has no traffic yet (a backup, a deploy, a
  check, a migration's approval) stands aside: it ends at once and hands its lock to the
  emergency rollback, which moves traffic off the revision serving now and removes the new
  revision's tag (``STAND_ASIDE``);
- one whose new revision may have traffic is taken back by its own rules: 100% back to the
  revision before it (``TAKE_BACK``);
- a rollback that holds the lock without moving traffic (waiting for a person, or left by a
  crashed instance whose lease ran out) yields; only an operation that an instance is running
  right now in a traffic-changing state makes the service busy.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.config import ServiceConfig
from bot.ops import drill, flags, release, restore, rollback
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.rollback import RollbackRequest
from bot.store import TERMINAL_STATES, LockHolder, Operation

# kind -> (deps, operation_id, user, reason) -> the new revision's tag to remove, None if not
STAND_ASIDE = {
    "release": release.stand_aside,
    "flag": flags.stand_aside,
    "drill": drill.stand_aside,
}
# kind -> (deps, operation_id, user, reason) -> the operation, now going back by its own rules.
# A restore steps aside by itself before its revision serves (its clone takes hours, traffic
# untouched: restore.take_back hands the service over), and goes back once it serves.
TAKE_BACK = {
    "release": release.roll_back,
    "flag": flags.roll_back,
    "drill": drill.take_back,
    "restore": restore.take_back,
}

TRAFFIC_STATES = {
    "rollback": rollback.RUNNING_STATES,
    "release": release.RUNNING_STATES,
    "flag": flags.RUNNING_STATES,
}


def request_rollback(deps: Deps, request: RollbackRequest) -> Operation:
    """Validate, authorize and record a rollback (see ``rollback.create_rollback``), or, for an
    emergency on a service that a release, flip or drill holds, get past it (see above)."""
    service, emergency = rollback.authorize_request(deps, request)
    holder = deps.store.operations.lock_holder(service.name)
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
    by a release, flip or drill (it started in between) gets past that rather than being busy.
    Bad input (a word that looks like a revision but is none) is refused before anything is
    pre-empted."""
    if emergency and holder is not None:
        request = rollback.check_words(deps, request, service)
        if holder.state in TERMINAL_STATES:  # a crash between its end and its unlock
            deps.store.operations.release_stale_locks()
        elif holder.kind in TAKE_BACK:
            past = _get_past(deps, holder, request, service)
            if past is not None:
                return past
        elif not moving_traffic(holder, deps.clock.now()):
            rollback.yield_to(deps, holder.operation_id, request.user, request.reason)
    try:
        return rollback.create_rollback(deps, request, service, emergency)
    except UserError as error:
        now_held = deps.store.operations.lock_holder(service.name)
        if not (emergency and error.key == "error.busy" and _started_since(holder, now_held)):
            raise
    assert now_held is not None
    request = rollback.check_words(deps, request, service)
    past = _get_past(deps, now_held, request, service)
    return past or rollback.create_rollback(deps, request, service, emergency)


def _started_since(seen: LockHolder | None, now_held: LockHolder | None) -> bool:
    """A release, flip or drill that took the service after ``seen`` was read."""
    if now_held is None or now_held.kind not in TAKE_BACK:
        return False
    return seen is None or seen.operation_id != now_held.operation_id


def _get_past(
    deps: Deps, holder: LockHolder, request: RollbackRequest, service: ServiceConfig
) -> Operation | None:
    """Stand aside, else take back (see the module's docstring). None when the holder ended
    with its change kept between the lock's read and now: then an ordinary rollback will do."""
    stand_aside = STAND_ASIDE.get(holder.kind)
    tag = None
    if stand_aside is not None:
        tag = stand_aside(deps, holder.operation_id, request.user, request.reason)
    if tag is None:
        return _take_back(deps, holder, request)
    taking_over = replace(request, takes_over=holder.operation_id, drop_tag=tag)
    try:
        return rollback.create_rollback(deps, taking_over, service, emergency=True)
    except Exception:  # nothing to go back to, say: the service is not left locked
        deps.store.operations.release_lock(service.name, holder.operation_id)
        raise


def _take_back(deps: Deps, holder: LockHolder, request: RollbackRequest) -> Operation | None:
    """A release goes back to blue, a flag flip to the revision before it, a drill to the
    revision before its test, by their own rules. None when it ended with its change kept
    between the lock's read and now (the watch or the last step passed): then an ordinary
    rollback takes the change back, rather than the on-call engineer being told that nothing
    was changed."""
    try:
        return TAKE_BACK[holder.kind](deps, holder.operation_id, request.user, request.reason)
    except UserError:
        ended = deps.store.operations.operation(holder.operation_id)
        if ended is None or ended.state != "succeeded":
            raise
    deps.store.operations.release_stale_locks()  # its unlock may not have followed its end yet
    return None


def moving_traffic(holder: LockHolder, now: datetime) -> bool:
    """An instance runs this operation right now (live lease) in a traffic-changing state, or
    it was approved a moment ago and no instance has picked it up yet (never leased: the
    request's own instance submits it now, and every instance's tick runs it). Taking that for
    a crash's leftover let two concurrent on-call rollbacks cancel each other."""
    live = holder.lease_until is not None and holder.lease_until > now
    unclaimed = holder.lease_until is None and holder.state == "approved"
    return (live or unclaimed) and holder.state in TRAFFIC_STATES.get(holder.kind, ())
