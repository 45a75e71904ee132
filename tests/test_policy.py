"""The approval matrix and the rollback target, checked exhaustively against tables written by hand
from DESIGN.md ("The rules it enforces"), never derived from the code under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import chain, combinations
from pathlib import Path

import pytest

from bot.config import Action, Approvals, Role, RoleMembers, Roles, load_config
from bot.policy.approvals import (
    NESTING,
    Decision,
    Refusal,
    Steer,
    Verdict,
    allowed_actions,
    decide_approval,
    decide_request,
    decide_rollback,
    may_steer,
    roles_of,
)
from bot.policy.targets import TargetChoice, TargetProblem, choose_target, current_revision
from bot.ports import Revision

APP_YAML = Path(__file__).resolve().parent.parent / "app.yaml"
CONFIG = load_config(APP_YAML)
MATRIX: Approvals = CONFIG.approvals

DEV, SENIOR, LEAD, ONCALL = (
    Role.DEVELOPER,
    Role.SENIOR_DEVELOPER,
    Role.TECH_LEAD,
    Role.ON_CALL,
)

# -- the hand-written expectation ----------------------------------------------------------------

# What each directly held role grants (DESIGN.md: tech lead >= senior developer >= developer;
# on-call is its own role).
GRANTS: dict[Role, frozenset[Role]] = {
    DEV: frozenset({DEV}),
    SENIOR: frozenset({SENIOR, DEV}),
    LEAD: frozenset({LEAD, SENIOR, DEV}),
    ONCALL: frozenset({ONCALL}),
}

# DESIGN.md's matrix: who may request, and what happens when they do.
#   action                 requester  outcome when the requester asks  incidents only
EXPECTED_MATRIX: dict[Action, tuple[Role, Verdict, bool]] = {
    Action.DEPLOY_STAGING: (DEV, Verdict.RUN, False),  # automatic (still audited)
    Action.CANARY: (SENIOR, Verdict.RUN, False),  # self-approval
    Action.FULL_TRAFFIC: (LEAD, Verdict.NEEDS_APPROVAL, False),  # another tech lead approves
    Action.EMERGENCY_ROLLBACK: (ONCALL, Verdict.RUN, True),  # self-approval, incidents only
    Action.SCHEDULED_ROLLBACK: (LEAD, Verdict.NEEDS_APPROVAL, False),  # another tech lead
    # approval-only rows: a destructive migration, before any traffic / rolled back past
    Action.DESTRUCTIVE_MIGRATION: (SENIOR, Verdict.NEEDS_APPROVAL, False),
    Action.ROLLBACK_PAST_MIGRATION: (ONCALL, Verdict.NEEDS_APPROVAL, False),
    Action.FEATURE_FLAG: (SENIOR, Verdict.RUN, False),  # a production flag flip: self-approval
    Action.FEATURE_FLAG_STAGING: (DEV, Verdict.RUN, False),  # a staging flag flip: automatic
    Action.BACKUP: (SENIOR, Verdict.RUN, False),  # self-approval
    Action.RESTORE: (LEAD, Verdict.NEEDS_APPROVAL, False),  # another tech lead approves
    Action.DRILL: (DEV, Verdict.RUN, False),  # Runback's addition: a staging drill, automatic
    Action.READINESS_OVERRIDE: (LEAD, Verdict.RUN, False),  # release past a ❌, audited
}
NEEDS_ANOTHER_TECH_LEAD = {
    Action.FULL_TRAFFIC,
    Action.SCHEDULED_ROLLBACK,
    Action.DESTRUCTIVE_MIGRATION,
    Action.ROLLBACK_PAST_MIGRATION,
    Action.RESTORE,
}

ALL_ROLES = (DEV, SENIOR, LEAD, ONCALL)
DIRECT_SETS: list[frozenset[Role]] = [
    frozenset(c) for c in chain.from_iterable(combinations(ALL_ROLES, n) for n in range(5))
]
assert len(DIRECT_SETS) == 16


def effective(direct: frozenset[Role]) -> frozenset[Role]:
    return frozenset().union(*(GRANTS[r] for r in direct))


def expected_request(direct: frozenset[Role], action: Action, in_incidents: bool) -> Decision:
    requester, outcome, incidents_only = EXPECTED_MATRIX[action]
    if requester not in effective(direct):
        return Decision(action, Verdict.REFUSED, requester, Refusal.ROLE_REQUIRED)
    if incidents_only and not in_incidents:
        return Decision(action, Verdict.REFUSED, requester, Refusal.INCIDENTS_CHANNEL_ONLY)
    return Decision(action, outcome, requester)


def expected_rollback(direct: frozenset[Role], in_incidents: bool) -> Decision:
    held = effective(direct)
    if ONCALL in held and in_incidents:
        return Decision(Action.EMERGENCY_ROLLBACK, Verdict.RUN, ONCALL)
    if LEAD in held:
        return Decision(Action.SCHEDULED_ROLLBACK, Verdict.NEEDS_APPROVAL, LEAD)
    if ONCALL in held:
        return Decision(
            Action.EMERGENCY_ROLLBACK, Verdict.REFUSED, ONCALL, Refusal.INCIDENTS_CHANNEL_ONLY
        )
    return Decision(Action.SCHEDULED_ROLLBACK, Verdict.REFUSED, LEAD, Refusal.ROLE_REQUIRED)


def expected_approval(direct: frozenset[Role], action: Action, is_requester: bool) -> Decision:
    held = effective(direct)
    if action in NEEDS_ANOTHER_TECH_LEAD:
        if LEAD not in held:
            return Decision(action, Verdict.REFUSED, LEAD, Refusal.ROLE_REQUIRED)
        if is_requester:
            return Decision(action, Verdict.REFUSED, LEAD, Refusal.OWN_REQUEST)
        return Decision(action, Verdict.RUN, LEAD)
    requester = EXPECTED_MATRIX[action][0]
    if requester not in held:
        return Decision(action, Verdict.REFUSED, requester, Refusal.ROLE_REQUIRED)
    return Decision(action, Verdict.RUN, requester)


def label(direct: frozenset[Role]) -> str:
    return "+".join(r.value for r in ALL_ROLES if r in direct) or "none"


USER = "U0TEST"


def roles_config_for(direct: frozenset[Role]) -> Roles:
    """A roles section where USER holds exactly ``direct`` by user id."""
    return Roles(**{r.value: RoleMembers(users=(USER,)) for r in direct})


# -- roles_of ------------------------------------------------------------------------------------

NO_GROUPS: dict[str, set[str]] = {}
SHIPPED_GROUPS = {"oncall": {"U0ANA"}}


@pytest.mark.parametrize(
    ("user", "groups", "expected"),
    [
        pytest.param("U0LUIS", NO_GROUPS, {LEAD, SENIOR, DEV}, id="tech-lead-by-id"),
        pytest.param("U0SOFIA", NO_GROUPS, {LEAD, SENIOR, DEV}, id="second-tech-lead"),
        pytest.param("U0MARTA", NO_GROUPS, {SENIOR, DEV}, id="senior-by-id"),
        pytest.param("U0PABLO", NO_GROUPS, {DEV}, id="developer-by-id"),
        pytest.param(
            "U0MARTA", {"oncall": {"U0MARTA"}}, {SENIOR, DEV, ONCALL}, id="on-call-by-group"
        ),
        # U0ANA is also listed by id: on-call even when user groups cannot be read (free plans)
        pytest.param("U0ANA", NO_GROUPS, {ONCALL}, id="on-call-by-id-without-groups"),
        pytest.param("U0MARTA", NO_GROUPS, {SENIOR, DEV}, id="group-members-unknown"),
        pytest.param("U0MARTA", {"oncall": set()}, {SENIOR, DEV}, id="group-empty"),
        pytest.param(
            "U0MARTA", {"other": {"U0MARTA"}}, {SENIOR, DEV}, id="other-group-grants-nothing"
        ),
        pytest.param(
            "U0LUIS", {"oncall": {"U0LUIS"}}, {LEAD, SENIOR, DEV, ONCALL}, id="tech-lead-on-call"
        ),
        pytest.param("U0EVE", SHIPPED_GROUPS, set(), id="unknown-user"),
        pytest.param("", SHIPPED_GROUPS, set(), id="empty-id"),
        pytest.param("u0luis", NO_GROUPS, set(), id="ids-are-case-sensitive"),
        pytest.param("Luis", NO_GROUPS, set(), id="display-name-is-not-an-id"),
        pytest.param("oncall", SHIPPED_GROUPS, set(), id="group-handle-is-not-a-user"),
    ],
)
def test_roles_of_shipped_config(
    user: str, groups: dict[str, set[str]], expected: set[Role]
) -> None:
    assert roles_of(user, CONFIG.roles, groups) == frozenset(expected)


@pytest.mark.parametrize("direct", DIRECT_SETS, ids=label)
def test_roles_of_nesting_by_user_id(direct: frozenset[Role]) -> None:
    roles = roles_config_for(direct)
    assert roles_of(USER, roles, NO_GROUPS) == effective(direct)
    assert roles_of("U0OTHER", roles, NO_GROUPS) == frozenset()


@pytest.mark.parametrize("direct", DIRECT_SETS, ids=label)
def test_roles_of_nesting_by_user_group(direct: frozenset[Role]) -> None:
    roles = Roles(**{r.value: RoleMembers(groups=(f"{r.value}s",)) for r in direct})
    members = {f"{r.value}s": {USER} for r in ALL_ROLES}  # membership alone grants nothing
    assert roles_of(USER, roles, members) == effective(direct)
    assert roles_of("U0OTHER", roles, members) == frozenset()


def test_roles_of_group_handle_with_at_sign() -> None:
    roles = Roles(tech_lead=RoleMembers(groups=("@leads",)))
    assert roles_of("U0X", roles, {"leads": {"U0X"}}) == {LEAD, SENIOR, DEV}


def test_roles_of_ids_and_groups_combine() -> None:
    roles = Roles(
        developer=RoleMembers(users=("U0X",)),
        senior_developer=RoleMembers(groups=("seniors",)),
        on_call=RoleMembers(users=("U0Y",), groups=("oncall",)),
    )
    groups = {"seniors": {"U0X"}, "oncall": {"U0Z"}}
    assert roles_of("U0X", roles, groups) == {SENIOR, DEV}
    assert roles_of("U0Y", roles, groups) == {ONCALL}
    assert roles_of("U0Z", roles, groups) == {ONCALL}


# -- the matrix, exhaustively --------------------------------------------------------------------


def test_shipped_matrix_is_the_designs() -> None:
    for action, (requester, _outcome, incidents_only) in EXPECTED_MATRIX.items():
        row = MATRIX.row(action)
        assert row.requester is requester, action
        assert row.incidents_channel_only is incidents_only, action
    assert set(EXPECTED_MATRIX) == set(Action)


@pytest.mark.parametrize("in_incidents", [True, False], ids=["incidents", "elsewhere"])
@pytest.mark.parametrize("action", list(Action), ids=str)
@pytest.mark.parametrize("direct", DIRECT_SETS, ids=label)
def test_decide_request(direct: frozenset[Role], action: Action, in_incidents: bool) -> None:
    held = roles_of(USER, roles_config_for(direct), NO_GROUPS)
    got = decide_request(MATRIX, action, held, in_incidents)
    want = expected_request(direct, action, in_incidents)
    assert got == want
    assert got.allowed is (want.verdict is not Verdict.REFUSED)


@pytest.mark.parametrize("in_incidents", [True, False], ids=["incidents", "elsewhere"])
@pytest.mark.parametrize("direct", DIRECT_SETS, ids=label)
def test_allowed_actions(direct: frozenset[Role], in_incidents: bool) -> None:
    got = allowed_actions(MATRIX, effective(direct), in_incidents)
    assert got == {a: expected_request(direct, a, in_incidents) for a in Action}


@pytest.mark.parametrize("in_incidents", [True, False], ids=["incidents", "elsewhere"])
@pytest.mark.parametrize("direct", DIRECT_SETS, ids=label)
def test_decide_rollback(direct: frozenset[Role], in_incidents: bool) -> None:
    held = roles_of(USER, roles_config_for(direct), NO_GROUPS)
    assert decide_rollback(MATRIX, held, in_incidents) == expected_rollback(direct, in_incidents)


# Spot checks that read like the runbook, with the shipped people.
@pytest.mark.parametrize(
    ("user", "in_incidents", "action", "verdict", "refusal"),
    [
        ("U0ANA", True, Action.EMERGENCY_ROLLBACK, Verdict.RUN, None),
        (
            "U0ANA",
            False,
            Action.EMERGENCY_ROLLBACK,
            Verdict.REFUSED,
            Refusal.INCIDENTS_CHANNEL_ONLY,
        ),
        ("U0LUIS", True, Action.SCHEDULED_ROLLBACK, Verdict.NEEDS_APPROVAL, None),
        ("U0LUIS", False, Action.SCHEDULED_ROLLBACK, Verdict.NEEDS_APPROVAL, None),
        ("U0MARTA", True, Action.SCHEDULED_ROLLBACK, Verdict.REFUSED, Refusal.ROLE_REQUIRED),
        ("U0PABLO", True, Action.SCHEDULED_ROLLBACK, Verdict.REFUSED, Refusal.ROLE_REQUIRED),
        ("U0EVE", True, Action.SCHEDULED_ROLLBACK, Verdict.REFUSED, Refusal.ROLE_REQUIRED),
    ],
)
def test_rollback_for_the_shipped_people(
    user: str, in_incidents: bool, action: Action, verdict: Verdict, refusal: Refusal | None
) -> None:
    held = roles_of(user, CONFIG.roles, SHIPPED_GROUPS)
    decision = decide_rollback(MATRIX, held, in_incidents)
    assert (decision.action, decision.verdict, decision.refusal) == (action, verdict, refusal)


@pytest.mark.parametrize("is_requester", [True, False], ids=["own-request", "other-request"])
@pytest.mark.parametrize("action", list(Action), ids=str)
@pytest.mark.parametrize("direct", DIRECT_SETS, ids=label)
def test_decide_approval(direct: frozenset[Role], action: Action, is_requester: bool) -> None:
    approver = USER
    requester = USER if is_requester else "U0REQUESTER"
    held = roles_of(approver, roles_config_for(direct), NO_GROUPS)
    got = decide_approval(MATRIX, action, approver, held, requester)
    assert got == expected_approval(direct, action, is_requester)


def test_approval_between_the_shipped_tech_leads() -> None:
    luis = roles_of("U0LUIS", CONFIG.roles, SHIPPED_GROUPS)
    sofia = roles_of("U0SOFIA", CONFIG.roles, SHIPPED_GROUPS)
    marta = roles_of("U0MARTA", CONFIG.roles, SHIPPED_GROUPS)
    for action in NEEDS_ANOTHER_TECH_LEAD:
        assert decide_approval(MATRIX, action, "U0SOFIA", sofia, "U0LUIS").verdict is Verdict.RUN
        own = decide_approval(MATRIX, action, "U0LUIS", luis, "U0LUIS")
        assert (own.verdict, own.refusal) == (Verdict.REFUSED, Refusal.OWN_REQUEST)
        senior = decide_approval(MATRIX, action, "U0MARTA", marta, "U0LUIS")
        assert (senior.verdict, senior.refusal, senior.required_role) == (
            Verdict.REFUSED,
            Refusal.ROLE_REQUIRED,
            LEAD,
        )


# -- choose_target -------------------------------------------------------------------------------

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def rev(n: int, ready: bool = True) -> Revision:
    return Revision(f"r{n}", f"gcr.io/demo/wa:{n}", T0 + timedelta(hours=n), ready)


def revisions(*numbers: int, not_ready: tuple[int, ...] = ()) -> list[Revision]:
    """Revisions newest first, as the Cloud Run API lists them."""
    return [rev(n, n not in not_ready) for n in sorted(numbers, reverse=True)]


FIVE = revisions(1, 2, 3, 4, 5)


def pick(
    revs: list[Revision],
    serving: dict[str, int],
    history: list[str] | None = None,
    bad: set[str] | None = None,
    named: str | None = None,
) -> tuple[str | None, TargetProblem | None, str]:
    choice: TargetChoice = choose_target(revs, serving, history or [], bad or set(), named)
    return (choice.revision.name if choice.revision else None, choice.problem, choice.source)


@pytest.mark.parametrize(
    ("revs", "serving", "history", "bad", "named", "expected"),
    [
        # a named revision
        pytest.param(
            FIVE,
            {"r5": 100},
            [],
            set(),
            "r9",
            (None, TargetProblem.UNKNOWN_REVISION, ""),
            id="named-unknown",
        ),
        pytest.param(
            revisions(1, 2, 3, not_ready=(2,)),
            {"r3": 100},
            [],
            set(),
            "r2",
            ("r2", TargetProblem.NOT_READY, ""),
            id="named-not-ready",
        ),
        pytest.param(
            FIVE,
            {"r5": 100},
            [],
            set(),
            "r5",
            ("r5", TargetProblem.ALREADY_SERVING, ""),
            id="named-already-serving",
        ),
        pytest.param(
            FIVE,
            {"r5": 100},
            ["r4"],
            set(),
            "r2",
            ("r2", None, "named"),
            id="named-fine-over-history",
        ),
        pytest.param(
            FIVE,
            {"r5": 100},
            [],
            {"r3"},
            "r3",
            ("r3", None, "named"),
            id="named-bad-is-allowed-explicitly",
        ),
        pytest.param(
            FIVE,
            {"r4": 90, "r5": 10},
            [],
            set(),
            "r5",
            ("r5", None, "named"),
            id="named-canary-at-10-percent",
        ),
        pytest.param(
            FIVE,
            {"r4": 50, "r5": 50},
            [],
            set(),
            "r4",
            ("r4", None, "named"),
            id="named-half-serving",
        ),
        pytest.param(
            FIVE, {}, [], set(), "r3", ("r3", None, "named"), id="named-while-nothing-serves"
        ),
        pytest.param(
            FIVE,
            {"r5": 100},
            [],
            set(),
            "",
            ("r4", None, "newest_older"),
            id="empty-name-is-no-name",
        ),
        # history first
        pytest.param(
            FIVE,
            {"r5": 100},
            ["r5", "r3", "r4"],
            set(),
            None,
            ("r3", None, "history"),
            id="history-skips-current",
        ),
        pytest.param(
            FIVE,
            {"r5": 100},
            ["r4", "r2"],
            {"r4"},
            None,
            ("r2", None, "history"),
            id="history-skips-rolled-back-from",
        ),
        pytest.param(
            revisions(1, 2, 3, 4, 5, not_ready=(4,)),
            {"r5": 100},
            ["r4", "r1"],
            set(),
            None,
            ("r1", None, "history"),
            id="history-skips-not-ready",
        ),
        pytest.param(
            FIVE,
            {"r5": 100},
            ["r0", "r2"],
            set(),
            None,
            ("r2", None, "history"),
            id="history-skips-deleted-revision",
        ),
        pytest.param(
            FIVE,
            {"r3": 100},
            ["r3", "r5", "r4", "r2"],
            {"r5", "r4"},
            None,
            ("r2", None, "history"),
            id="history-after-a-rollback",
        ),
        pytest.param(
            FIVE,
            {"r4": 90, "r5": 10},
            ["r4", "r2"],
            set(),
            None,
            ("r2", None, "history"),
            id="history-with-split-traffic",
        ),
        # fallback: the newest revision older than the current one
        pytest.param(
            FIVE, {"r5": 100}, [], set(), None, ("r4", None, "newest_older"), id="fallback-previous"
        ),
        pytest.param(
            FIVE,
            {"r5": 100},
            ["r5"],
            set(),
            None,
            ("r4", None, "newest_older"),
            id="fallback-when-history-is-current",
        ),
        pytest.param(
            FIVE,
            {"r5": 100},
            ["r4"],
            {"r4"},
            None,
            ("r3", None, "newest_older"),
            id="fallback-when-history-is-bad",
        ),
        pytest.param(
            revisions(1, 2, 3, 4, 5, not_ready=(4,)),
            {"r5": 100},
            [],
            {"r3"},
            None,
            ("r2", None, "newest_older"),
            id="fallback-skips-not-ready-and-bad",
        ),
        pytest.param(
            FIVE,
            {"r3": 100},
            [],
            set(),
            None,
            ("r2", None, "newest_older"),
            id="fallback-never-newer-than-current",
        ),
        pytest.param(
            revisions(1, 2, 3),
            {"r9": 100},
            [],
            set(),
            None,
            ("r3", None, "newest_older"),
            id="fallback-current-not-listed",
        ),
        # split traffic: the current revision is the one with the largest share
        pytest.param(
            FIVE,
            {"r4": 90, "r5": 10},
            [],
            set(),
            None,
            ("r3", None, "newest_older"),
            id="split-90-10",
        ),
        pytest.param(
            FIVE,
            {"r4": 30, "r5": 70},
            [],
            set(),
            None,
            ("r4", None, "newest_older"),
            id="split-30-70",
        ),
        pytest.param(
            FIVE,
            {"r2": 20, "r3": 50, "r5": 30},
            [],
            set(),
            None,
            ("r2", None, "newest_older"),
            id="split-three-ways",
        ),
        # nothing to go back to
        pytest.param(
            revisions(1),
            {"r1": 100},
            [],
            set(),
            None,
            (None, TargetProblem.NO_PREVIOUS, ""),
            id="only-one-revision",
        ),
        pytest.param(
            revisions(1, 2, 3, not_ready=(1,)),
            {"r2": 100},
            ["r3"],
            {"r3"},
            None,
            (None, TargetProblem.ALL_ROLLED_BACK, ""),
            id="the-only-ready-one-was-rolled-back-from",
        ),
        pytest.param(
            revisions(1, 2, 3, not_ready=(1,)),
            {"r2": 100},
            [],
            set(),
            None,
            (None, TargetProblem.NO_PREVIOUS, ""),
            id="older-ones-not-ready",
        ),
        pytest.param(
            [],
            {"r1": 100},
            ["r0"],
            set(),
            None,
            (None, TargetProblem.NO_PREVIOUS, ""),
            id="no-revisions-listed",
        ),
        pytest.param(
            FIVE,
            {},
            ["r4"],
            set(),
            None,
            (None, TargetProblem.NOT_SERVING, ""),
            id="nothing-serving-no-name",
        ),
    ],
)
def test_choose_target(
    revs: list[Revision],
    serving: dict[str, int],
    history: list[str],
    bad: set[str],
    named: str | None,
    expected: tuple[str | None, TargetProblem | None, str],
) -> None:
    assert pick(revs, serving, history, bad, named) == expected


@pytest.mark.parametrize(
    ("serving", "expected"),
    [
        ({}, None),
        ({"r5": 100}, "r5"),
        ({"r4": 90, "r5": 10}, "r4"),
        ({"r5": 10, "r4": 90}, "r4"),
        ({"r4": 30, "r5": 70}, "r5"),
        ({"r1": 20, "r2": 45, "r3": 35}, "r2"),
        ({"r1": 0, "r2": 100}, "r2"),
    ],
)
def test_current_revision_is_the_largest_share(
    serving: dict[str, int], expected: str | None
) -> None:
    assert current_revision(serving) == expected


def test_current_revision_tie_does_not_depend_on_order() -> None:
    assert current_revision({"r4": 50, "r5": 50}) == current_revision({"r5": 50, "r4": 50})


@pytest.mark.parametrize(
    ("steer", "may", "may_not"),
    [
        (Steer.ROLL_BACK, {Role.SENIOR_DEVELOPER, Role.ON_CALL}, {Role.DEVELOPER}),
        (Steer.STEER_RELEASE, {Role.SENIOR_DEVELOPER, Role.TECH_LEAD}, {Role.ON_CALL}),
        (Steer.RESPOND_TO_INCIDENT, {Role.ON_CALL, Role.TECH_LEAD}, {Role.SENIOR_DEVELOPER}),
        (Steer.GO_BACK, {Role.ON_CALL, Role.TECH_LEAD}, {Role.SENIOR_DEVELOPER}),
    ],
)
def test_who_may_steer_a_running_operation(
    steer: Steer, may: set[Role], may_not: set[Role]
) -> None:
    for role in may:
        assert may_steer(steer, roles_nested(role)), (steer, role)
    for role in may_not:
        assert not may_steer(steer, roles_nested(role)), (steer, role)


def roles_nested(role: Role) -> frozenset[Role]:
    return frozenset(NESTING[role])
