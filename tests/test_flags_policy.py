"""bot/policy/flags.py: names, values, who may flip, and where the environment and the service's
own answer disagree. Pure."""

from __future__ import annotations

import pytest

from bot.config import Action, ConfigError, Role, load_config, parse_config
from bot.policy.approvals import Verdict
from bot.policy.flags import (
    Agreement,
    EnvFlag,
    FlagName,
    FlipProblem,
    NameProblem,
    compare,
    decide_flip,
    env_value,
    flags_in_env,
    flip_problem,
    parse_answer,
    parse_flag_name,
    parse_switch,
    similar_flags,
    suggested_name,
)
from bot.ports import EnvVar
from tests.test_config import APP_YAML

CONFIG = load_config(APP_YAML)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("NEW_CHECKOUT", FlagName("NEW_CHECKOUT")),
        ("FEATURE_FLAG_NEW_CHECKOUT", FlagName("NEW_CHECKOUT")),
        ("V2", FlagName("V2")),
        ("FEATURE_FLAG_", NameProblem.EMPTY),
        ("", NameProblem.EMPTY),
        ("new_checkout", NameProblem.CHARACTERS),
        ("NEW-CHECKOUT", NameProblem.CHARACTERS),
        ("NEW CHECKOUT", NameProblem.CHARACTERS),
        ("NÉW", NameProblem.CHARACTERS),
        ("X" * 101, NameProblem.TOO_LONG),
    ],
)
def test_parse_flag_name(word: str, expected: FlagName | NameProblem) -> None:
    assert parse_flag_name(word) == expected


def test_a_flag_names_its_variable() -> None:
    assert FlagName("NEW_CHECKOUT").env == "FEATURE_FLAG_NEW_CHECKOUT"


@pytest.mark.parametrize(
    ("word", "suggestion"),
    [("new-checkout", "NEW_CHECKOUT"), ("feature_flag_beta", "BETA"), ("---", ""), ("A", "")],
)
def test_suggested_name(word: str, suggestion: str) -> None:
    assert suggested_name(word) == suggestion


@pytest.mark.parametrize(
    ("word", "value"), [("on", True), ("ON", True), ("off", False), ("true", None), ("", None)]
)
def test_parse_switch(word: str, value: bool | None) -> None:
    assert parse_switch(word) is value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[("true", True), (" TRUE ", True), ("1", True), ("yes", True), ("on", True)],
        *[("false", False), ("0", False), ("", False), ("Off", False), ("no", False)],
        *[("maybe", None), ("2", None)],
    ],
)
def test_env_value(text: str, value: bool | None) -> None:
    assert env_value(text) is value


def test_flags_in_env_reads_only_feature_flags_and_knows_secrets() -> None:
    env = (
        EnvVar("APP_ENV", "production"),
        EnvVar("FEATURE_FLAG_A", "true"),
        EnvVar("FEATURE_FLAG_B", "sometimes"),
        EnvVar("FEATURE_FLAG_C", secret="flag-c", secret_version="1"),
        EnvVar("FEATURE_FLAG_", "true"),
        EnvVar("FEATURE_FLAG_A", "false"),  # the last one wins, as in a container
    )
    assert flags_in_env(env) == {
        "A": EnvFlag("A", "false", False),
        "B": EnvFlag("B", "sometimes", None),
        "C": EnvFlag("C", "", None, from_secret=True),
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"flags": {"A": True, "FEATURE_FLAG_B": False}}, {"A": True, "B": False}),
        ({"flags": {}, "revision": "x"}, {}),
        ({"flags": {"A": "true"}}, None),
        ({"flags": {"a": True}}, None),
        ({"flags": ["A"]}, None),
        ({"A": True}, None),
        ([], None),
        (None, None),
    ],
)
def test_parse_answer(body: object, expected: dict[str, bool] | None) -> None:
    assert parse_answer(body) == expected


def test_compare_marks_every_kind_of_disagreement() -> None:
    env = {
        "SAME": EnvFlag("SAME", "true", True),
        "DIFF": EnvFlag("DIFF", "false", False),
        "UNSAID": EnvFlag("UNSAID", "true", True),
        "ODD": EnvFlag("ODD", "maybe", None),
    }
    answer = {"SAME": True, "DIFF": True, "ODD": False, "EXTRA": True}
    got = {row.name: row.agreement for row in compare(env, answer)}
    assert got == {
        "DIFF": Agreement.MISMATCH,
        "EXTRA": Agreement.ONLY_IN_ANSWER,
        "ODD": Agreement.UNKNOWN,
        "SAME": Agreement.MATCH,
        "UNSAID": Agreement.NOT_IN_ANSWER,
    }
    assert [row.name for row in compare(env, None)] == ["DIFF", "ODD", "SAME", "UNSAID"]
    assert {row.agreement for row in compare(env, None)} == {Agreement.UNKNOWN}


@pytest.mark.parametrize(
    ("current", "value", "problem"),
    [
        (None, True, FlipProblem.NEW_NAME),  # a typo must not create a variable (issue 20)
        (None, False, FlipProblem.NEW_NAME),
        (EnvFlag("A", "false", False), True, None),
        (EnvFlag("A", "true", True), True, FlipProblem.ALREADY),
        (EnvFlag("A", "0", False), False, FlipProblem.ALREADY),
        (EnvFlag("A", "maybe", None), False, None),
        (EnvFlag("A", "", None, from_secret=True), True, FlipProblem.FROM_SECRET),
    ],
)
def test_flip_problem(current: EnvFlag | None, value: bool, problem: FlipProblem | None) -> None:
    assert flip_problem(current, value) == problem


def test_a_flag_confirmed_as_new_may_be_set() -> None:
    assert flip_problem(None, True, confirmed_new=True) is None
    assert similar_flags("NEW_CHEKOUT", {"NEW_CHECKOUT", "BETA_SEARCH"}) == ["NEW_CHECKOUT"]
    assert similar_flags("DARK_MODE", {"NEW_CHECKOUT", "BETA_SEARCH"}) == []


@pytest.mark.parametrize(
    ("environment", "held", "verdict", "role"),
    [
        ("production", {Role.SENIOR_DEVELOPER, Role.DEVELOPER}, Verdict.RUN, Role.SENIOR_DEVELOPER),
        ("production", {Role.DEVELOPER}, Verdict.REFUSED, Role.SENIOR_DEVELOPER),
        ("production", {Role.ON_CALL}, Verdict.REFUSED, Role.SENIOR_DEVELOPER),
        ("staging", {Role.DEVELOPER}, Verdict.RUN, Role.DEVELOPER),
        ("staging", set(), Verdict.REFUSED, Role.DEVELOPER),
    ],
)
def test_decide_flip_by_the_shipped_matrix(
    environment: str, held: set[Role], verdict: Verdict, role: Role
) -> None:
    decision = decide_flip(CONFIG.approvals, environment, frozenset(held), False)
    assert (decision.verdict, decision.required_role) == (verdict, role)
    expected = Action.FEATURE_FLAG if environment == "production" else Action.FEATURE_FLAG_STAGING
    assert decision.action is expected


def _yaml(approvals_extra: str) -> str:
    text = APP_YAML.read_text(encoding="utf-8")
    start = text.index("  feature_flag:")
    end = text.index("  approval_ttl_minutes")
    return text[:start] + approvals_extra + text[end:]


def test_an_old_app_yaml_without_the_row_gets_the_runbooks_defaults() -> None:
    config = parse_config(_yaml(""))
    assert config.approvals.row(Action.FEATURE_FLAG).requester is Role.SENIOR_DEVELOPER
    assert config.approvals.row(Action.FEATURE_FLAG_STAGING).requester is Role.DEVELOPER


def test_the_row_can_be_tightened_but_never_wait_for_an_approval() -> None:
    tight = "  feature_flag:\n    production: {requester: tech_lead, approval: self}\n"
    config = parse_config(_yaml(tight))
    assert config.approvals.row(Action.FEATURE_FLAG).requester is Role.TECH_LEAD
    assert config.approvals.row(Action.FEATURE_FLAG_STAGING).requester is Role.DEVELOPER
    waiting = (
        "  feature_flag:\n    staging: {requester: developer, approval: one_other_tech_lead}\n"
    )
    with pytest.raises(ConfigError, match=r"approvals\.feature_flag\.staging"):
        parse_config(_yaml(waiting))
