"""Cloud Run's name limits: a traffic tag and the service's name fit 46 characters (the tag
URL), a revision name is a DNS label (63 characters at most, no trailing hyphen). app.yaml
refuses a service too long for the tags Runback uses, Runback builds only valid revision names,
and the emulator refuses both with Cloud Run's own messages."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from bot.config import RUNBACK_TAGS, ConfigError, load_config, parse_config
from bot.gcp.cloudrun import CloudRunAdmin
from bot.ops.drill.request import drill_revision_name
from bot.ops.drill.states import DRILL_TAG
from bot.ops.flags.states import FLAG_TAG
from bot.ops.release.request import next_revision_name
from bot.ops.release.states import GREEN_TAG
from bot.ops.restore.states import RESTORE_TAG
from bot.policy.names import is_revision_name, revision_name
from bot.ports import CloudRunError, ServiceRef, TrafficTarget
from bot.sandbox.emulator.server import Emulator

APP_YAML = Path(__file__).resolve().parent.parent / "app.yaml"
LONGEST_ALLOWED = 46 - len("restored")  # 38


def with_service_name(name: str) -> str:
    data = yaml.safe_load(APP_YAML.read_text())
    data = copy.deepcopy(data)
    data["services"][0]["name"] = name
    return yaml.safe_dump(data, sort_keys=False)


def test_the_tags_checked_are_the_tags_runback_puts_on_revisions() -> None:
    assert set(RUNBACK_TAGS) == {GREEN_TAG, FLAG_TAG, RESTORE_TAG, DRILL_TAG}


def test_a_service_too_long_for_runbacks_tags_is_refused_with_the_key_path(
    tmp_path: Path,
) -> None:
    name = "w" * (LONGEST_ALLOWED + 1)
    path = tmp_path / "app.yaml"
    path.write_text(with_service_name(name))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert f"services[0].name: Value error, '{name}' is 39 characters" in message
    assert "46 characters together" in message and "'restored'" in message
    assert "at most 38" in message
    assert parse_config(with_service_name("w" * LONGEST_ALLOWED)).services[0].name


@pytest.mark.parametrize("length", [1, 38, 47, 49])
def test_runback_builds_only_valid_revision_names(length: int) -> None:
    service = "s" * length
    now = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
    for name in (drill_revision_name(service, now), next_revision_name(service, [])):
        assert is_revision_name(name, service), name
        assert len(name) <= 63 and not name.endswith("-")
    assert revision_name("svc", "--Flag-") == "svc-flag"


@pytest.fixture
def admin(emulator: Emulator) -> CloudRunAdmin:
    return CloudRunAdmin(emulator.host, retry_deadline_s=2.0)


def seed(emulator: Emulator, service: str) -> ServiceRef:
    revision = {"name": f"{service}-00001", "image": "us-docker.pkg.dev/p/a/app:1"}
    emulator.cloudrun.seed_service("p", "us-central1", service, [revision])
    return ServiceRef("p", "us-central1", service)


def test_the_emulator_refuses_a_tag_too_long_for_its_url(
    emulator: Emulator, admin: CloudRunAdmin
) -> None:
    service = "s" * 40  # a name Cloud Run allows; with "restored" 48 characters
    ref = seed(emulator, service)
    state = admin.get_service(ref)
    targets = [TrafficTarget(f"{service}-00001", 100), TrafficTarget(f"{service}-00001", 0, "flag")]
    admin.wait_operation(admin.start_traffic_update(ref, targets, state.etag), 5)  # 44: fine
    state = admin.get_service(ref)
    targets[1] = TrafficTarget(f"{service}-00001", 0, "restored")
    with pytest.raises(CloudRunError) as refused:
        admin.start_traffic_update(ref, targets, state.etag)
    assert refused.value.reason == "invalid_argument"
    assert (
        f"traffic tag 'restored' and service name '{service}' together are too long. Combined "
        "traffic tag and service name cannot exceed 46 characters."
    ) in refused.value.detail


@pytest.mark.parametrize("suffix", ["x" * 60, "trailing-", "Upper"])
def test_the_emulator_refuses_a_revision_name_that_is_no_dns_label(
    emulator: Emulator, admin: CloudRunAdmin, suffix: str
) -> None:
    ref = seed(emulator, "svc")
    state = admin.get_service(ref)
    with pytest.raises(CloudRunError) as refused:
        admin.start_deploy(
            ref,
            "us-docker.pkg.dev/p/a/app:2",
            f"svc-{suffix}",
            [TrafficTarget("svc-00001", 100)],
            state.etag,
            base_revision="svc-00001",
        )
    assert refused.value.reason == "invalid_argument"
    assert "must begin with letter, and may not end with hyphen; must be less than 64" in (
        refused.value.detail
    )
