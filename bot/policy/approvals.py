"""The approval matrix of the runbook, as pure functions over plain data.

Roles nest: tech lead >= senior developer >= developer. On-call is a role of its own. A user's
roles are always derived from their Slack user id (from the signed payload) and the groups that
contain it, never from anything a button carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from enum import StrEnum

from bot.config import Action, Approval, Approvals, Role, Roles

NESTING: dict[Role, tuple[Role, ...]] = {
    Role.TECH_LEAD: (Role.TECH_LEAD, Role.SENIOR_DEVELOPER, Role.DEVELOPER),
    Role.SENIOR_DEVELOPER: (Role.SENIOR_DEVELOPER, Role.DEVELOPER),
    Role.DEVELOPER: (Role.DEVELOPER,),
    Role.ON_CALL: (Role.ON_CALL,),
}


def roles_of(user_id: str, roles: Roles, group_members: Mapping[str, Set[str]]) -> frozenset[Role]:
    """Every role ``user_id`` holds, directly, through a user group, or by nesting."""
    held: set[Role] = set()
    for role in Role:
        members = roles.members(role)
        in_group = any(user_id in group_members.get(handle, ()) for handle in members.groups)
        if user_id in members.users or in_group:
            held.update(NESTING[role])
    return frozenset(held)


class Verdict(StrEnum):
    RUN = "run"  # self-approved or automatic: run now
    NEEDS_APPROVAL = "needs_approval"  # another tech lead must approve
    REFUSED = "refused"


class Refusal(StrEnum):
    ROLE_REQUIRED = "role_required"
    INCIDENTS_CHANNEL_ONLY = "incidents_channel_only"
    OWN_REQUEST = "own_request"


@dataclass(frozen=True)
class Decision:
    action: Action
    verdict: Verdict
    required_role: Role
    refusal: Refusal | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.REFUSED


def decide_request(
    matrix: Approvals, action: Action, held: Set[Role], in_incidents_channel: bool
) -> Decision:
    """May someone holding ``held`` request ``action`` here, and does it need an approval?"""
    row = matrix.row(action)
    if row.requester not in held:
        return Decision(action, Verdict.REFUSED, row.requester, Refusal.ROLE_REQUIRED)
    if row.incidents_channel_only and not in_incidents_channel:
        return Decision(action, Verdict.REFUSED, row.requester, Refusal.INCIDENTS_CHANNEL_ONLY)
    if row.approval is Approval.ONE_OTHER_TECH_LEAD:
        return Decision(action, Verdict.NEEDS_APPROVAL, row.requester)
    return Decision(action, Verdict.RUN, row.requester)


def decide_rollback(matrix: Approvals, held: Set[Role], in_incidents_channel: bool) -> Decision:
    """A rollback is an emergency (on-call, self-approved, incidents channel) when it can be,
    else a scheduled one (tech lead, one approval). The refusal names the most useful role."""
    emergency = decide_request(matrix, Action.EMERGENCY_ROLLBACK, held, in_incidents_channel)
    if emergency.allowed:
        return emergency
    scheduled = decide_request(matrix, Action.SCHEDULED_ROLLBACK, held, in_incidents_channel)
    if scheduled.allowed:
        return scheduled
    if emergency.refusal is Refusal.INCIDENTS_CHANNEL_ONLY:
        return emergency  # an on-call engineer in the wrong channel: tell them where to go
    return scheduled


def decide_approval(
    matrix: Approvals,
    action: Action,
    approver_id: str,
    approver_roles: Set[Role],
    requester_id: str,
) -> Decision:
    """May this user approve (or reject) a pending request for ``action``?"""
    row = matrix.row(action)
    if row.approval is Approval.ONE_OTHER_TECH_LEAD:
        if Role.TECH_LEAD not in approver_roles:
            return Decision(action, Verdict.REFUSED, Role.TECH_LEAD, Refusal.ROLE_REQUIRED)
        if approver_id == requester_id:
            return Decision(action, Verdict.REFUSED, Role.TECH_LEAD, Refusal.OWN_REQUEST)
        return Decision(action, Verdict.RUN, Role.TECH_LEAD)
    if row.requester not in approver_roles:
        return Decision(action, Verdict.REFUSED, row.requester, Refusal.ROLE_REQUIRED)
    return Decision(action, Verdict.RUN, row.requester)


def allowed_actions(
    matrix: Approvals, held: Set[Role], in_incidents_channel: bool
) -> dict[Action, Decision]:
    """What ``/ops whoami`` shows: every action of the matrix and how it would go."""
    return {a: decide_request(matrix, a, held, in_incidents_channel) for a in Action}


@dataclass(frozen=True)
class Approver:
    """Who may approve a request for an action: a role, and whether the requester is excluded.
    The same rule as ``decide_approval``, said in advance on the card."""

    role: Role
    not_the_requester: bool


def who_may_approve(matrix: Approvals, action: Action) -> Approver:
    row = matrix.row(action)
    if row.approval is Approval.ONE_OTHER_TECH_LEAD:
        return Approver(Role.TECH_LEAD, not_the_requester=True)
    return Approver(row.requester, not_the_requester=False)


class Steer(StrEnum):
    """A click on an operation that is already running, which no request row of the matrix
    covers: who may steer it is decided here, by role, like every other role decision."""

    ROLL_BACK = "roll_back"  # a release's or a flag flip's Roll back
    STEER_RELEASE = "steer_release"  # a release's Pause, Resume, Proceed
    RESPOND_TO_INCIDENT = "respond_to_incident"  # an incident's Observe, Resolve
    GO_BACK = "go_back"  # a restore's way back to the old database's revision


STEERERS: dict[Steer, frozenset[Role]] = {
    # the runbook's rollback rows: a senior developer or on-call may roll back
    Steer.ROLL_BACK: frozenset({Role.SENIOR_DEVELOPER, Role.TECH_LEAD, Role.ON_CALL}),
    Steer.STEER_RELEASE: frozenset({Role.SENIOR_DEVELOPER, Role.TECH_LEAD}),
    Steer.RESPOND_TO_INCIDENT: frozenset({Role.ON_CALL, Role.TECH_LEAD}),
    Steer.GO_BACK: frozenset({Role.TECH_LEAD, Role.ON_CALL}),
}


def may_steer(steer: Steer, held: Set[Role]) -> bool:
    """May someone holding ``held`` click ``steer`` on a running operation?"""
    return bool(STEERERS[steer] & held)
