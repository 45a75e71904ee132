"""app.yaml -> Config: the shipped file loads; a broken one fails with the key's path and what
was expected."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import (
    Action,
    Approval,
    ConfigError,
    Role,
    load_config,
    parse_config,
)

APP_YAML = Path(__file__).resolve().parent.parent / "app.yaml"
SHIPPED: dict[str, Any] = yaml.safe_load(APP_YAML.read_text(encoding="utf-8"))


def broken(change: Callable[[dict[str, Any]], object]) -> str:
    """The shipped config with ``change`` applied, as YAML text."""
    data = copy.deepcopy(SHIPPED)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def error_of(text: str, tmp_path: Path) -> str:
    """The ConfigError message for ``text``, both parsed directly and loaded from a file."""
    with pytest.raises(ConfigError) as parsed:
        parse_config(text)
    path = tmp_path / "app.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as loaded:
        load_config(path)
    assert str(path) in str(loaded.value)
    return str(parsed.value)


# -- the shipped file ----------------------------------------------------------------------------


def test_shipped_app_yaml_loads() -> None:
    config = load_config(APP_YAML)

    assert config.locale == "en"
    assert config.channels.incidents.id == "C0INCIDENTS"
    assert config.channels.incidents.name == "incidents"
    assert config.service_names == ["wa-backend", "wa-backend-staging"]
    backend = config.service("wa-backend")
    assert backend is not None
    assert (backend.project, backend.region, backend.environment, backend.health_path) == (
        "runback-sandbox",
        "us-central1",
        "production",
        "/health",
    )
    assert config.service("nope") is None

    assert config.roles.members(Role.TECH_LEAD).users == ("U0LUIS", "U0SOFIA")
    assert config.roles.members(Role.SENIOR_DEVELOPER).users == ("U0MARTA",)
    assert config.roles.members(Role.DEVELOPER).users == ("U0PABLO",)
    assert config.roles.members(Role.ON_CALL).groups == ("oncall",)


def test_shipped_matrix_is_the_runbooks() -> None:
    """DESIGN.md's matrix, written out here by hand."""
    approvals = load_config(APP_YAML).approvals
    expected = {
        Action.DEPLOY_STAGING: (Role.DEVELOPER, Approval.AUTO, False),
        Action.CANARY: (Role.SENIOR_DEVELOPER, Approval.SELF, False),
        Action.FULL_TRAFFIC: (Role.TECH_LEAD, Approval.ONE_OTHER_TECH_LEAD, False),
        Action.EMERGENCY_ROLLBACK: (Role.ON_CALL, Approval.SELF, True),
        Action.SCHEDULED_ROLLBACK: (Role.TECH_LEAD, Approval.ONE_OTHER_TECH_LEAD, False),
        # "Migraciones destructivas: no permitidas sin aprobación" (approval-only rows)
        Action.DESTRUCTIVE_MIGRATION: (Role.SENIOR_DEVELOPER, Approval.ONE_OTHER_TECH_LEAD, False),
        Action.ROLLBACK_PAST_MIGRATION: (Role.ON_CALL, Approval.ONE_OTHER_TECH_LEAD, False),
        Action.FEATURE_FLAG: (Role.SENIOR_DEVELOPER, Approval.SELF, False),
        Action.FEATURE_FLAG_STAGING: (Role.DEVELOPER, Approval.AUTO, False),
        Action.BACKUP: (Role.SENIOR_DEVELOPER, Approval.SELF, False),
        Action.RESTORE: (Role.TECH_LEAD, Approval.ONE_OTHER_TECH_LEAD, False),
        # Runback's additions: the staging drill, and releasing past a failing checklist
        Action.DRILL: (Role.DEVELOPER, Approval.AUTO, False),
        Action.READINESS_OVERRIDE: (Role.TECH_LEAD, Approval.SELF, False),
    }
    assert set(expected) == set(Action)
    for action, row in expected.items():
        got = approvals.row(action)
        assert (got.requester, got.approval, got.incidents_channel_only) == row, action
    assert approvals.approval_ttl_minutes == 30


def test_shipped_thresholds_are_the_runbooks() -> None:
    config = load_config(APP_YAML)
    t = config.thresholds
    assert (t.error_rate_rollback, t.error_rate_observe) == (0.05, 0.01)
    assert (t.p95_rollback_ms, t.p95_proceed_ms) == (2000, 800)
    assert (t.observe_minutes, t.min_requests) == (5, 50)
    assert config.rollback.health_checks == 3


def test_load_config_follows_runback_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(broken(lambda d: d.update(locale="es")), encoding="utf-8")
    monkeypatch.setenv("RUNBACK_CONFIG", str(path))
    assert load_config().locale == "es"


def test_defaults_and_normalisation() -> None:
    def change(data: dict[str, Any]) -> None:
        for key in ("thresholds", "rollback", "sandbox", "locale"):
            del data[key]
        del data["services"][0]["health_path"]
        del data["approvals"]["approval_ttl_minutes"]
        data["channels"]["incidents"]["name"] = "#incidents"
        data["roles"]["on_call"]["groups"] = ["@oncall"]

    config = parse_config(broken(change))
    assert config.locale == "en"
    assert config.services[0].health_path == "/health"  # /healthz is reserved on *.run.app
    assert config.approvals.approval_ttl_minutes == 30
    assert config.thresholds.error_rate_rollback == 0.05
    assert config.channels.incidents.name == "incidents"
    assert config.roles.on_call.groups == ("oncall",)
    assert (config.slack.claim_s, config.slack.lost_answer_wait_s) == (20, 15)


# -- broken files: the message names the key and what was expected ------------------------------


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return change


def _duplicate_service(data: dict[str, Any]) -> None:
    data["services"].append(dict(data["services"][0], region="europe-west1"))


BROKEN = [
    pytest.param(
        _del("services.1.region"), ["services[1].region: field required"], id="missing-region"
    ),
    pytest.param(
        _del("approvals.canary"), ["approvals.canary: field required"], id="missing-matrix-row"
    ),
    pytest.param(_del("channels"), ["channels: field required"], id="missing-channels"),
    pytest.param(
        _set("services.0.environment", "prod"),
        ["services[0].environment:", "'production' or 'staging'"],
        id="wrong-environment",
    ),
    pytest.param(_set("locale", "fr"), ["locale:", "'en' or 'es'"], id="wrong-locale"),
    pytest.param(
        _set("thresholds.error_rate_rolback", 0.05),
        ["thresholds.error_rate_rolback: unknown key"],
        id="typo-in-thresholds",
    ),
    pytest.param(
        _set("services.0.helth_path", "/healthz"),
        ["services[0].helth_path: unknown key"],
        id="typo-in-service",
    ),
    pytest.param(
        lambda d: d.update(servces=d.pop("services")),
        ["servces: unknown key", "services: field required"],
        id="typo-top-level",
    ),
    pytest.param(
        _set("roles.tech_lead.users", ["U0LUIS", "luis"]),
        ["roles.tech_lead.users:", "'luis' is not a Slack user ID"],
        id="display-name-as-user",
    ),
    pytest.param(
        _set("roles.developer.users", ["@pablo"]),
        ["roles.developer.users:", "'@pablo' is not a Slack user ID"],
        id="handle-as-user",
    ),
    pytest.param(
        _set("roles.senior_developer.users", ["u0marta"]),
        ["roles.senior_developer.users:", "not a Slack user ID"],
        id="lowercase-id",
    ),
    pytest.param(
        _set("roles.team_lead", {"users": ["U0LUIS"]}),
        ["roles.team_lead: unknown key"],
        id="unknown-role",
    ),
    pytest.param(
        _duplicate_service,
        ["services:", "service names must be unique; repeated: wa-backend"],
        id="duplicate-service",
    ),
    pytest.param(
        _set("services.0.name", "WA_Backend"),
        ["services[0].name:", "pattern"],
        id="bad-service-name",
    ),
    pytest.param(_set("services", []), ["services:", "at least 1"], id="no-services"),
    pytest.param(
        _set("thresholds.error_rate_observe", 0.05),
        ["thresholds:", "error_rate_observe must be below error_rate_rollback"],
        id="error-rates-out-of-order",
    ),
    pytest.param(
        _set("thresholds.p95_proceed_ms", 2500),
        ["thresholds:", "p95_proceed_ms must be below p95_rollback_ms"],
        id="p95-out-of-order",
    ),
    pytest.param(
        _set("thresholds.error_rate_rollback", 1.5),
        ["thresholds.error_rate_rollback:", "less than or equal to 1"],
        id="rate-above-one",
    ),
    pytest.param(
        _set("approvals.canary.approval", "maybe"),
        ["approvals.canary.approval:", "'auto', 'self' or 'one_other_tech_lead'"],
        id="wrong-approval-kind",
    ),
    pytest.param(
        _set("approvals.full_traffic.requester", "cto"),
        ["approvals.full_traffic.requester:", "'tech_lead'"],
        id="wrong-requester",
    ),
    pytest.param(
        _set("approvals.approval_ttl_minutes", 0),
        ["approvals.approval_ttl_minutes:", "greater than 0"],
        id="ttl-zero",
    ),
    pytest.param(
        _set("channels.incidents.id", "#incidents"),
        ["channels.incidents.id:", "pattern"],
        id="channel-name-as-id",
    ),
    pytest.param(
        _set("rollback.health_checks", 0),
        ["rollback.health_checks:", "greater than or equal to 1"],
        id="no-health-checks",
    ),
    pytest.param(
        lambda data: data.update(slack={"claim_s": 0, "lost_answer_wait_s": 15}),
        ["slack.claim_s:", "greater than 0"],
        id="slack-claim-zero",
    ),
]


@pytest.mark.parametrize(("change", "expected"), BROKEN)
def test_broken_config_names_the_key(
    change: Callable[[dict[str, Any]], object], expected: list[str], tmp_path: Path
) -> None:
    message = error_of(broken(change), tmp_path)
    assert message.startswith("app.yaml is invalid:\n")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_every_error_is_reported_on_its_own_line(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        del data["services"][1]["region"]
        data["channels"]["incidents"]["id"] = "incidents"
        data["thresholds"]["typo"] = 1

    lines = error_of(broken(change), tmp_path).splitlines()[1:]
    assert len(lines) == 3
    assert lines[0].startswith("channels.incidents.id: ")
    assert lines[1:] == [
        "services[1].region: field required",
        "thresholds.typo: unknown key (check the spelling)",
    ]


def test_all_services_broken_does_not_claim_there_are_none(tmp_path: Path) -> None:
    """Two services, each missing its region: the report names both keys and nothing else.

    Regression: pydantic's ``min_length`` on ``services`` counts only the items that validated,
    so the report used to add "services: Tuple should have at least 1 item after validation,
    not 0" although the file lists two services.
    """

    def change(data: dict[str, Any]) -> None:
        for service in data["services"]:
            del service["region"]

    lines = error_of(broken(change), tmp_path).splitlines()[1:]
    assert lines == [
        "services[0].region: field required",
        "services[1].region: field required",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("locale: en\nservices: [unclosed\n", "is not valid YAML", id="not-yaml"),
        pytest.param("key: value\n\tbad: tab\n", "is not valid YAML", id="tab-indent"),
        pytest.param("- locale\n- services\n", "must be a mapping", id="a-list"),
        pytest.param("just a string\n", "must be a mapping", id="a-scalar"),
        pytest.param("", "must be a mapping", id="empty"),
        pytest.param("# only a comment\n", "must be a mapping", id="only-comments"),
    ],
)
def test_not_a_yaml_mapping(text: str, expected: str, tmp_path: Path) -> None:
    message = error_of(text, tmp_path)
    assert message.startswith("app.yaml ")
    assert expected in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "app.yaml"
    with pytest.raises(ConfigError, match=r"cannot read .*nowhere/app\.yaml"):
        load_config(path)


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)
