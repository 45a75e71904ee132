"""The flag flip's Cloud Run PATCH (CloudRunAdmin.start_env_update) and the /config/flags reader
(HttpServiceConfig), on the real run_v2 client and requests against the emulator over a socket."""

from __future__ import annotations

import pytest

from bot.gcp.cloudrun import CloudRunAdmin
from bot.gcp.service_config import HttpServiceConfig, answer_of
from bot.ports import CloudRunError, EnvVar, ServiceRef, TrafficTarget
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator

REF = ServiceRef("demo", "europe-west1", "wa-backend")
OLD, CURRENT, NEWER = "wa-backend-00001-old", "wa-backend-00002-cur", "wa-backend-00003-new"
SIDECAR = {"name": "otel", "image": "otel:1"}


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    env = {
        "APP_ENV": "production",
        "FEATURE_FLAG_NEW_CHECKOUT": "false",
        "DATABASE_URL": {"secret": "wa-db-url", "version": "3"},
        "FEATURE_FLAG_BETA": "true",
    }
    emulator.cloudrun.seed_service(
        "demo",
        "europe-west1",
        "wa-backend",
        [
            {"name": OLD, "image": "wa:1.0", "age_s": 7200, "sidecars": [SIDECAR], "env": env},
            {"name": CURRENT, "image": "wa:1.1", "age_s": 600, "sidecars": [SIDECAR], "env": env},
        ],
        {CURRENT: 100},
        tags={"blue": OLD},
    )
    return emulator


def admin(emulator: Emulator) -> CloudRunAdmin:
    return CloudRunAdmin(emulator.host, retry_deadline_s=1.5, initial_backoff_s=0.05)


def flip(cloudrun: CloudRunAdmin, base: str, name: str, value: str) -> None:
    state = cloudrun.get_service(REF)
    targets = [
        TrafficTarget(base, 100),
        TrafficTarget(OLD, 0, "blue"),
        TrafficTarget(name, 0, "flag"),
    ]
    operation = cloudrun.start_env_update(
        REF, base, EnvVar("FEATURE_FLAG_NEW_CHECKOUT", value), name, targets, state.etag
    )
    cloudrun.wait_operation(operation, timeout_s=10)


def test_an_env_patch_creates_a_revision_that_carries_it_and_nothing_else(emu: Emulator) -> None:
    cloudrun = admin(emu)
    flip(cloudrun, CURRENT, "wa-backend-00003-flg", "true")
    base, new = (
        cloudrun.get_revision(REF, CURRENT),
        cloudrun.get_revision(REF, "wa-backend-00003-flg"),
    )
    assert base.image == "wa:1.1" and new.image == emu.cloudrun.images.resolve("wa:1.1")
    assert [v.name for v in new.env] == [v.name for v in base.env], "in place, in order"
    assert new.env_value("FEATURE_FLAG_NEW_CHECKOUT") == "true"
    assert new.env_value("FEATURE_FLAG_BETA") == "true" and new.env_value("APP_ENV") == "production"
    secret = next(v for v in new.env if v.name == "DATABASE_URL")
    assert (secret.secret, secret.secret_version) == ("wa-db-url", "3"), "secret refs kept"
    state = cloudrun.get_service(REF)
    assert state.serving() == {CURRENT: 100}, "the new revision has no traffic yet"
    assert {s.tag: s.revision for s in state.traffic if s.tag} == {
        "blue": OLD,
        "flag": "wa-backend-00003-flg",
    }
    patch = emu.router.calls.list("run.services.patch")[-1]
    # the base revision's whole template (bot.gcp.cloudrun.template_from_revision)
    assert patch.query["updateMask"] == ["template,traffic"]
    sidecar = patch.body["template"]["containers"][0]
    assert sidecar["image"] == emu.cloudrun.images.resolve("otel:1"), "pinned, as it runs"
    assert "env" not in sidecar, "only the ingress container"
    assert emu.cloudrun.revision_flags("wa-backend-00003-flg") == {
        "NEW_CHECKOUT": "true",
        "BETA": "true",
    }


def test_the_flip_starts_from_the_serving_revision_not_the_services_template(
    emu: Emulator,
) -> None:
    """After a rollback the template still names the newer image; a flip must not bring it back."""
    cloudrun = admin(emu)
    state = cloudrun.get_service(REF)
    operation = cloudrun.start_deploy(
        REF, "wa:2.0-bad", NEWER, [TrafficTarget(NEWER, 100)], state.etag
    )
    cloudrun.wait_operation(operation, timeout_s=10)
    state = cloudrun.get_service(REF)
    cloudrun.wait_operation(
        cloudrun.start_traffic_update(REF, [TrafficTarget(CURRENT, 100)], state.etag), 10
    )
    flip(cloudrun, CURRENT, "wa-backend-00004-flg", "true")
    flipped = cloudrun.get_revision(REF, "wa-backend-00004-flg").image
    assert flipped == emu.cloudrun.images.resolve("wa:1.1"), "wa:1.1 by its digest"


def test_a_stale_etag_is_a_conflict_and_changes_nothing(emu: Emulator) -> None:
    cloudrun = admin(emu)
    stale = cloudrun.get_service(REF).etag
    flip(cloudrun, CURRENT, "wa-backend-00003-flg", "true")
    with pytest.raises(CloudRunError) as raised:
        cloudrun.start_env_update(
            REF,
            CURRENT,
            EnvVar("FEATURE_FLAG_NEW_CHECKOUT", "false"),
            "wa-backend-00004-flg",
            [TrafficTarget(CURRENT, 100)],
            stale,
        )
    assert raised.value.reason == "etag_conflict"
    assert "wa-backend-00004-flg" not in [r.name for r in cloudrun.list_revisions(REF)]


def test_an_unknown_variable_is_added_to_the_ingress_container(emu: Emulator) -> None:
    cloudrun = admin(emu)
    state = cloudrun.get_service(REF)
    operation = cloudrun.start_env_update(
        REF,
        CURRENT,
        EnvVar("FEATURE_FLAG_DARK_MODE", "true"),
        "wa-backend-00003-drk",
        [TrafficTarget(CURRENT, 100)],
        state.etag,
    )
    cloudrun.wait_operation(operation, timeout_s=10)
    new = cloudrun.get_revision(REF, "wa-backend-00003-drk")
    assert new.env[-1] == EnvVar("FEATURE_FLAG_DARK_MODE", "true")
    assert len(new.env) == 5


def test_config_flags_answers_from_the_serving_and_tagged_revisions_env(emu: Emulator) -> None:
    reader = HttpServiceConfig()
    cloudrun = admin(emu)
    flip(cloudrun, CURRENT, "wa-backend-00003-flg", "true")
    service = reader.flags(f"{emu.url}/_svc/wa-backend", timeout_s=2)
    tagged = reader.flags(f"{emu.url}/_svc/wa-backend/_tag/flag", timeout_s=2)
    assert service.flags == {"NEW_CHECKOUT": False, "BETA": True} and service.status == 200
    assert tagged.flags == {"NEW_CHECKOUT": True, "BETA": True}

    emu.cloudrun.set_config_flags(CURRENT, {"NEW_CHECKOUT": True})  # a stale cache, say
    assert reader.flags(f"{emu.url}/_svc/wa-backend", timeout_s=2).flags == {"NEW_CHECKOUT": True}
    emu.cloudrun.set_config_flags(CURRENT)
    assert reader.flags(f"{emu.url}/_svc/wa-backend", timeout_s=2).flags == {
        "NEW_CHECKOUT": False,
        "BETA": True,
    }


def test_config_flags_failures_are_answers_never_exceptions(emu: Emulator) -> None:
    reader = HttpServiceConfig()
    url = f"{emu.url}/_svc/wa-backend"
    emu.router.faults.add(Fault("service.config_flags", 500))
    failed = reader.flags(url, timeout_s=2)
    assert (failed.flags, failed.status, failed.problem) == (None, 500, "http_status")
    missing = reader.flags(f"{emu.url}/_svc/wa-backend/_tag/nope", timeout_s=2)
    assert (missing.flags, missing.status) == (None, 404)
    emu.router.faults.add(Fault("service.config_flags", None, delay_ms=1500))
    slow = reader.flags(url, timeout_s=0.3)
    assert (slow.flags, slow.problem, slow.detail) == (None, "unreachable", "timeout")


def test_config_flags_of_a_protected_service_carries_an_id_token(emu: Emulator) -> None:
    from bot.gcp.emulator_host import emulator_id_tokens

    emu.cloudrun.require_auth("wa-backend")
    url = f"{emu.url}/_svc/wa-backend"
    denied = HttpServiceConfig().flags(url, timeout_s=2)
    assert (denied.flags, denied.problem) == (None, "invoker_denied")
    reader = HttpServiceConfig(id_token_source=emulator_id_tokens(emu.host))
    assert reader.flags(url, timeout_s=2, audience=url).flags == {
        "NEW_CHECKOUT": False,
        "BETA": True,
    }


@pytest.mark.parametrize(
    ("status", "text", "problem"),
    [
        (200, '{"flags": {"A": true, "FEATURE_FLAG_B": false}}', ""),
        (200, "flags: A=true", "not_json"),
        (200, '{"A": true}', "bad_shape"),
        (200, '{"flags": {"A": "true"}}', "bad_shape"),
        (200, '{"flags": {"a-b": true}}', "bad_shape"),
        (404, "<title>Error 404 (Not Found)!!1</title>", "ingress_internal"),  # not a reserved path
        (403, "Forbidden", "invoker_denied"),
        (503, "", "http_status"),
    ],
)
def test_answer_of(status: int, text: str, problem: str) -> None:
    answer = answer_of(status, text)
    assert answer.problem == problem
    assert (answer.flags == {"A": True, "B": False}) is (problem == "")
