"""The restore's clone is a copy of its original's instance settings (issue 16, item 3): on
PostgreSQL 16 an insert without the edition would be Enterprise Plus, which refuses db-custom
tiers (Cloud SQL's own 400), and a backup carries no flags, network, HA or disk settings."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bot.ops.restore.states import RestoreData
from bot.sandbox.console import Sandbox
from tests.conftest import sandbox_config
from tests.helpers import run
from tests.test_database_flows import PROJECT, ask_and_approve, card, latest

SETTINGS = {
    "edition": "ENTERPRISE",
    "availabilityType": "REGIONAL",
    "dataDiskType": "PD_SSD",
    "dataDiskSizeGb": "100",
    "deletionProtectionEnabled": True,
    "databaseFlags": [
        {"name": "max_connections", "value": "400"},
        {"name": "log_min_duration_statement", "value": "500"},
    ],
    "ipConfiguration": {
        "ipv4Enabled": False,
        "privateNetwork": f"projects/{PROJECT}/global/networks/app-vpc",
        "sslMode": "TRUSTED_CLIENT_CERTIFICATE_REQUIRED",
    },
    "backupConfiguration": {"enabled": True, "startTime": "02:00"},
}


@pytest.fixture
def box(caplog: pytest.LogCaptureFixture) -> Iterator[Sandbox]:
    caplog.set_level(logging.INFO)
    sandbox = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)
    sandbox.emulator.sqladmin.seed_instance(
        PROJECT, "wa-backend-db", database_version="POSTGRES_16", settings=SETTINGS
    )
    try:
        yield sandbox
    finally:
        sandbox.close()


def test_the_clone_copies_edition_tier_network_flags_ha_disk_and_backups(box: Sandbox) -> None:
    newest = box.emulator.sqladmin.backup_runs(PROJECT, "wa-backend-db")[0]["id"]
    ask_and_approve(box, backup=newest)
    operation = latest(box, "restore")
    assert operation.state == "creating", RestoreData.of(operation).outcome
    clone = box.emulator.sqladmin.instance(PROJECT, RestoreData.of(operation).clone)
    settings = clone["settings"]
    for key in ("edition", "availabilityType", "dataDiskType", "dataDiskSizeGb"):
        assert settings[key] == SETTINGS[key], key
    assert settings["tier"] == "db-custom-2-7680"
    assert settings["databaseFlags"] == SETTINGS["databaseFlags"]
    assert settings["ipConfiguration"]["privateNetwork"].endswith("/app-vpc")
    assert settings["ipConfiguration"]["ipv4Enabled"] is False
    assert settings["ipConfiguration"]["sslMode"] == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    assert settings["backupConfiguration"]["enabled"] is True
    assert settings["backupConfiguration"]["startTime"] == "02:00"
    assert settings["deletionProtectionEnabled"] is True
    kinds = [kind for kind, _ in clone["ip_addresses"]]
    assert kinds == ["PRIVATE"], "no public IP, as the original"
    shown = card(box, "restore")
    assert "Copied from `wa-backend-db`: enterprise edition, tier `db-custom-2-7680`" in shown
    assert "private network `app-vpc`, public IP off" in shown and "`max_connections`" in shown
    run(box, "wait 6m", "wait 11m")
    assert latest(box, "restore").state == "judging"


def test_the_emulator_refuses_a_custom_tier_on_enterprise_plus_as_cloud_sql_does(
    box: Sandbox,
) -> None:
    from google.api_core.exceptions import BadRequest
    from google.cloud import sqladmin_v1beta4 as sql

    from bot.gcp.retrying import emulator_options

    host = box.emulator.env()["RUNBACK_EMULATOR_HOST"]
    client = sql.SqlInstancesServiceClient(**emulator_options(host))
    body = sql.DatabaseInstance(
        name="plain-16",
        region="us-central1",
        database_version=sql.SqlDatabaseVersion.POSTGRES_16,
        settings=sql.Settings(tier="db-custom-2-7680"),
    )
    with pytest.raises(BadRequest) as refused:
        client.insert(request={"project": PROJECT, "body": body})
    assert "Invalid Tier (db-custom-2-7680) for (ENTERPRISE_PLUS) Edition" in str(refused.value)
    body.settings.edition = sql.Settings.Edition.ENTERPRISE
    client.insert(request={"project": PROJECT, "body": body})
    made = box.emulator.sqladmin.instance(PROJECT, "plain-16")
    assert [kind for kind, _ in made["ip_addresses"]] == ["PRIMARY"], "public IP by default"
