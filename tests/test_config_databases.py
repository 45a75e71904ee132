"""app.yaml's databases, backup settings and the new rows of the matrix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.config import Approval, ConfigError, Role, parse_config

REPO = Path(__file__).resolve().parents[1]


def shipped() -> dict:
    return yaml.safe_load((REPO / "app.yaml").read_text())


def test_the_shipped_file_names_each_services_database() -> None:
    config = parse_config(yaml.safe_dump(shipped()))
    production = config.service("wa-backend")
    assert production.database.instance == "wa-backend-db"
    assert production.database.secret == "wa-backend-database-url"
    assert production.database.env == "DATABASE_URL"
    assert production.database_project == "runback-sandbox"  # the service's by default
    assert config.service_of_instance("wa-backend-staging-db").name == "wa-backend-staging"
    assert config.backups.max_age_hours == 24


def test_an_older_file_without_databases_or_the_new_rows_still_loads() -> None:
    data = shipped()
    for service in data["services"]:
        del service["database"]
    del data["approvals"]["backup"], data["approvals"]["restore"], data["backups"]
    config = parse_config(yaml.safe_dump(data))
    assert config.service("wa-backend").database is None
    assert config.approvals.backup.requester is Role.SENIOR_DEVELOPER
    assert config.approvals.backup.approval is Approval.SELF
    assert config.approvals.restore.requester is Role.TECH_LEAD
    assert config.approvals.restore.approval is Approval.ONE_OTHER_TECH_LEAD


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"instance": "Orders_DB", "secret": "s"}, "services[0].database.instance"),
        ({"instance": "orders-db", "secret": "has spaces"}, "services[0].database.secret"),
        ({"instance": "orders-db"}, "services[0].database.secret: field required"),
        ({"instance": "orders-db", "secret": "s", "env": "1BAD"}, "services[0].database.env"),
        ({"instance": "orders-db", "secret": "s", "pasword": "x"}, "database.pasword: unknown key"),
    ],
)
def test_a_bad_database_is_refused_with_its_key_path(change: dict, message: str) -> None:
    data = shipped()
    data["services"][0]["database"] = change
    with pytest.raises(ConfigError) as raised:
        parse_config(yaml.safe_dump(data))
    assert message in str(raised.value)


def test_bad_backup_settings_and_matrix_rows_name_their_key() -> None:
    data = shipped()
    data["backups"]["max_age_hours"] = 0
    data["approvals"]["restore"] = {"requester": "intern", "approval": "self"}
    with pytest.raises(ConfigError) as raised:
        parse_config(yaml.safe_dump(data))
    assert "backups.max_age_hours" in str(raised.value)
    assert "approvals.restore.requester" in str(raised.value)
