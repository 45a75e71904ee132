"""Blue/green deploys against the Cloud Run emulator: the real run_v2 client (and the bot's
CloudRunAdmin / CloudMonitoring adapters) over a real socket.

One PATCH creates the green revision (explicit name, new image) and pins the traffic with green
at 0% under a tag; later PATCHes shift traffic and drop the tag.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.future.polling import DEFAULT_POLLING
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from bot.gcp.cloudrun import DEPLOY_MASK, CloudRunAdmin
from bot.gcp.monitoring import CloudMonitoring
from bot.ports import (
    CloudRunError,
    EtagConflict,
    RevisionExists,
    ServiceRef,
    TrafficTarget,
)
from bot.sandbox.emulator.server import Emulator
from tests.helpers import FakeClock

REF = ServiceRef("demo", "europe-west1", "wa-backend")
SERVICE = REF.path
OLD, BLUE, GREEN = "wa-backend-00002-old", "wa-backend-00003-blu", "wa-backend-00004-grn"
BLUE_IMAGE, GREEN_IMAGE = "eu.gcr.io/demo/wa:1.3", "eu.gcr.io/demo/wa:1.4"
REVISION_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAST_POLL = DEFAULT_POLLING.with_delay(initial=0.02, maximum=0.1).with_timeout(5)


def seed(emulator: Emulator) -> None:
    emulator.cloudrun.seed_service(
        "demo",
        "europe-west1",
        "wa-backend",
        [
            {"name": OLD, "image": "eu.gcr.io/demo/wa:1.2", "age_s": 7200},
            {"name": BLUE, "image": BLUE_IMAGE, "age_s": 600},
        ],
        {BLUE: 100},
    )


def services_client(emulator: Emulator) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=emulator.url),
    )


def revisions_client(emulator: Emulator) -> run_v2.RevisionsClient:
    return run_v2.RevisionsClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=emulator.url),
    )


def pinned(*targets: tuple[str, int] | tuple[str, int, str]) -> list[run_v2.TrafficTarget]:
    return [
        run_v2.TrafficTarget(
            type_=REVISION_TYPE, revision=t[0], percent=t[1], tag=t[2] if len(t) > 2 else ""
        )
        for t in targets
    ]


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def deploy(
    services: run_v2.ServicesClient,
    revision: str = GREEN,
    image: str = GREEN_IMAGE,
    paths: tuple[str, ...] | None = ("template", "traffic"),
) -> Any:
    """The "deploy green" PATCH: a read-modify-write of the template plus the pinned traffic."""
    current = services.get_service(name=SERVICE)
    template = run_v2.RevisionTemplate(current.template)
    template.containers[0].image = image
    template.revision = revision
    traffic = [  # every target as it is, but the "green" tag moves to the new revision
        run_v2.TrafficTarget(
            type_=REVISION_TYPE,
            revision=s.revision,
            percent=s.percent,
            tag="" if s.tag == "green" else s.tag,
        )
        for s in current.traffic_statuses
        if s.percent or s.tag != "green"
    ]
    traffic += pinned((revision, 0, "green"))
    service = run_v2.Service(name=SERVICE, etag=current.etag, template=template, traffic=traffic)
    if paths is None:
        return services.update_service(service=service)
    return services.update_service(service=service, update_mask=mask(*paths))


def shift(services: run_v2.ServicesClient, *targets: tuple[str, int] | tuple[str, int, str]) -> Any:
    service = run_v2.Service(name=SERVICE, traffic=pinned(*targets))
    return services.update_service(service=service, update_mask=mask("traffic")).result(timeout=5)


def statuses(service: run_v2.Service) -> list[tuple[str, int, str]]:
    return [(s.revision, s.percent, s.tag) for s in service.traffic_statuses]


def served_by(url: str, times: int = 1) -> Counter[str]:
    return Counter(requests.get(url, timeout=5).headers["X-Serving-Revision"] for _ in range(times))


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    seed(emulator)
    return emulator


# -- 1. deploy green: one PATCH, new revision at 0% under a tag -------------------------------


@pytest.mark.parametrize(
    "paths",
    [("template", "traffic"), None, DEPLOY_MASK],
    ids=["template,traffic", "no-mask", "template.containers,template.revision,traffic"],
)
def test_deploy_green_in_one_patch(emu: Emulator, paths: tuple[str, ...] | None) -> None:
    services, revisions = services_client(emu), revisions_client(emu)
    result = deploy(services, paths=paths).result(timeout=5)
    call = emu.router.calls.list("run.services.patch")[-1]
    assert call.query.get("updateMask") == ([",".join(paths)] if paths else None)
    assert result.latest_created_revision == result.latest_ready_revision
    assert result.latest_ready_revision == f"{SERVICE}/revisions/{GREEN}"
    assert result.template.revision == GREEN
    assert result.template.containers[0].image == GREEN_IMAGE
    assert statuses(result) == [(BLUE, 100, ""), (GREEN, 0, "green")]
    tag_uri = f"{emu.url}/_svc/wa-backend/_tag/green"
    assert [s.uri for s in result.traffic_statuses] == ["", tag_uri]
    green = revisions.get_revision(name=f"{SERVICE}/revisions/{GREEN}")
    assert green.containers[0].image == GREEN_IMAGE
    assert [(c.type_, c.state) for c in green.conditions] == [("Ready", SUCCEEDED)]
    assert not green.reconciling
    assert emu.cloudrun.traffic("wa-backend") == [
        {"revision": BLUE, "percent": 100, "tag": ""},
        {"revision": GREEN, "percent": 0, "tag": "green"},
    ]
    # the tag URL is served by green, the service URL by blue only
    assert served_by(f"{tag_uri}/health", 3) == Counter({GREEN: 3})
    assert served_by(f"{emu.url}/_svc/wa-backend/health", 5) == Counter({BLUE: 5})
    metrics = requests.get(f"{tag_uri}/metrics", timeout=5)
    assert metrics.status_code == 200 and f'revision="{GREEN}"' in metrics.text
    # green's behaviour is its own
    emu.cloudrun.set_behaviour(GREEN, healthz_status=503)
    assert requests.get(f"{tag_uri}/health", timeout=5).status_code == 503
    assert requests.get(f"{tag_uri}/metrics", timeout=5).status_code == 500
    assert requests.get(f"{emu.url}/_svc/wa-backend/health", timeout=5).status_code == 200


def test_behaviour_of_the_new_revision_can_be_set_before_its_operation_completes(
    emu: Emulator,
) -> None:
    services = services_client(emu)
    emu.cloudrun.operation_delay_s = 0.3
    operation = deploy(services)
    assert not operation.done()
    assert emu.cloudrun.set_behaviour(GREEN, error_rate=0.07)["error_rate"] == 0.07
    during = services.get_service(name=SERVICE)
    assert during.reconciling and during.latest_created_revision.endswith(GREEN)
    assert during.latest_ready_revision.endswith(BLUE)
    assert statuses(during) == [(BLUE, 100, "")]  # the tag is not routed yet
    tag_url = f"{emu.url}/_svc/wa-backend/_tag/green/health"
    assert requests.get(tag_url, timeout=5).status_code == 404
    operation.result(polling=FAST_POLL)
    assert served_by(tag_url) == Counter({GREEN: 1})
    assert emu.cloudrun.behaviour(GREEN)["error_rate"] == 0.07


def test_new_revision_behaviour_makes_the_next_deploys_bad(emu: Emulator) -> None:
    services = services_client(emu)
    made = emu.cloudrun.new_revision_behaviour(healthz_status=503, error_rate=0.07)
    assert made == {"healthz_status": 503, "error_rate": 0.07, "p95_ms": 120.0, "rps": 20.0}
    deploy(services).result(timeout=5)
    assert emu.cloudrun.behaviour(GREEN) == made
    assert emu.cloudrun.behaviour(BLUE)["healthz_status"] == 200  # existing ones untouched
    tag_url = f"{emu.url}/_svc/wa-backend/_tag/green/health"
    assert requests.get(tag_url, timeout=5).status_code == 503
    # it stays the default until changed; no fields restores the healthy one
    deploy(services, "wa-backend-00005-two", "eu.gcr.io/demo/wa:1.5").result(timeout=5)
    assert emu.cloudrun.behaviour("wa-backend-00005-two")["healthz_status"] == 503
    assert emu.cloudrun.new_revision_behaviour()["healthz_status"] == 200
    deploy(services, "wa-backend-00006-thr", "eu.gcr.io/demo/wa:1.6").result(timeout=5)
    assert emu.cloudrun.behaviour("wa-backend-00006-thr")["healthz_status"] == 200
    with pytest.raises(ValueError, match="unknown behaviour field"):
        emu.cloudrun.new_revision_behaviour(colour="red")


def test_new_revision_behaviour_through_the_control_api(emu: Emulator) -> None:
    url = f"{emu.url}/_emulator/config"
    answer = requests.post(url, json={"new_revision_behaviour": {"error_rate": 0.07}}, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {
        "operation_delay_ms": 0.0,
        "new_revision_behaviour": {
            "healthz_status": 200,
            "error_rate": 0.07,
            "p95_ms": 120.0,
            "rps": 20.0,
        },
        "etag_error": "ABORTED",
    }
    deploy(services_client(emu)).result(timeout=5)
    assert emu.cloudrun.behaviour(GREEN)["error_rate"] == 0.07
    bad = requests.post(url, json={"new_revision_behaviour": {"colour": "red"}}, timeout=5)
    assert bad.status_code == 400
    assert requests.post(url, json={"new_revision_behaviour": [1]}, timeout=5).status_code == 400
    cleared = requests.post(url, json={"new_revision_behaviour": None}, timeout=5).json()
    assert cleared["new_revision_behaviour"]["error_rate"] == 0.0
    emu.cloudrun.new_revision_behaviour(rps=5)
    emu.cloudrun.reset()
    assert requests.post(url, json={}, timeout=5).json()["new_revision_behaviour"]["rps"] == 20.0


# -- 2. a revision name that is taken ---------------------------------------------------------


def test_a_taken_revision_name_is_409_already_exists(emu: Emulator) -> None:
    services = services_client(emu)
    with pytest.raises(exceptions.Conflict, match="with different configuration already exists"):
        deploy(services, revision=BLUE)
    deploy(services).result(timeout=5)
    with pytest.raises(exceptions.Conflict, match=f"Revision named '{GREEN}'"):
        deploy(services, image="eu.gcr.io/demo/wa:1.5")
    service = services.get_service(name=SERVICE)
    assert service.generation == 2  # only the successful deploy counted
    assert service.template.containers[0].image == GREEN_IMAGE
    raw = requests.patch(
        f"{emu.url}/v2/{SERVICE}?updateMask=template",
        json={"template": {"revision": OLD, "containers": [{"image": "wa:9"}]}},
        timeout=5,
    )
    assert raw.status_code == 409
    assert raw.json()["error"]["status"] == "ALREADY_EXISTS"


def test_naming_a_revision_with_the_same_configuration_reuses_it(emu: Emulator) -> None:
    services, revisions = services_client(emu), revisions_client(emu)
    deploy(services).result(timeout=5)
    deploy(services, "wa-backend-00005-nxt", "eu.gcr.io/demo/wa:1.5").result(timeout=5)
    # back to green's exact template, by its name: no new revision, green is the latest again
    result = deploy(services).result(timeout=5)
    assert result.latest_created_revision.endswith(GREEN)
    assert result.latest_ready_revision.endswith(GREEN)
    assert len(list(revisions.list_revisions(parent=SERVICE))) == 4


def test_the_revision_name_must_start_with_the_service_name(emu: Emulator) -> None:
    with pytest.raises(exceptions.BadRequest, match="must start with 'wa-backend-'"):
        deploy(services_client(emu), revision="green-00004")


# -- 3. traffic shifts keep (and drop) the tag ------------------------------------------------


def test_traffic_shifts_keep_the_tag_until_it_is_dropped(emu: Emulator) -> None:
    services = services_client(emu)
    deploy(services).result(timeout=5)
    base = f"{emu.url}/_svc/wa-backend"
    tag_uri = f"{base}/_tag/green"

    ten = shift(services, (BLUE, 90), (GREEN, 10, "green"))
    assert statuses(ten) == [(BLUE, 90, ""), (GREEN, 10, "green")]
    assert [s.uri for s in ten.traffic_statuses] == ["", tag_uri]
    assert served_by(f"{base}/health", 20) == Counter({BLUE: 18, GREEN: 2})
    assert served_by(f"{tag_uri}/health", 2) == Counter({GREEN: 2})

    half = shift(services, (BLUE, 50), (GREEN, 50, "green"))
    assert statuses(half) == [(BLUE, 50, ""), (GREEN, 50, "green")]
    assert [s.tag for s in half.traffic_statuses].count("green") == 1
    assert served_by(f"{base}/health", 10) == Counter({BLUE: 5, GREEN: 5})

    # blue keeps a tag at 0%: still addressable
    tagged = shift(services, (BLUE, 0, "blue"), (GREEN, 100, "green"))
    assert statuses(tagged) == [(BLUE, 0, "blue"), (GREEN, 100, "green")]
    assert served_by(f"{base}/_tag/blue/health", 2) == Counter({BLUE: 2})
    assert served_by(f"{base}/health", 4) == Counter({GREEN: 4})

    done = shift(services, (GREEN, 100))
    assert statuses(done) == [(GREEN, 100, "")]
    assert all(not s.uri for s in done.traffic_statuses)
    assert requests.get(f"{tag_uri}/health", timeout=5).status_code == 404
    assert requests.get(f"{base}/_tag/blue/health", timeout=5).status_code == 404
    assert emu.cloudrun.traffic("wa-backend") == [{"revision": GREEN, "percent": 100, "tag": ""}]


def test_a_tag_used_twice_is_invalid(emu: Emulator) -> None:
    services = services_client(emu)
    deploy(services).result(timeout=5)
    with pytest.raises(exceptions.BadRequest, match="used twice"):
        shift(services, (BLUE, 90, "green"), (GREEN, 10, "green"))
    assert statuses(services.get_service(name=SERVICE)) == [(BLUE, 100, ""), (GREEN, 0, "green")]


# -- 4. images and masks ----------------------------------------------------------------------

DIGEST = "sha256:" + "a1" * 32


@pytest.mark.parametrize(
    "image",
    ["", " ", "eu.gcr.io/demo/wa 1.4", "eu.gcr.io/demo/wa:1.4 ", "wa:", "wa@sha256:xyz", "/wa"],
)
def test_an_invalid_image_is_invalid_argument(emu: Emulator, image: str) -> None:
    services = services_client(emu)
    with pytest.raises(exceptions.BadRequest, match=r"template.containers\[0\].image"):
        deploy(services, image=image)
    assert services.get_service(name=SERVICE).generation == 1
    raw = requests.patch(
        f"{emu.url}/v2/{SERVICE}?updateMask=template",
        json={"template": {"revision": GREEN, "containers": [{"image": image}]}},
        timeout=5,
    )
    assert raw.status_code == 400 and raw.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert GREEN not in {r["revision"] for r in emu.cloudrun.traffic("wa-backend")}


@pytest.mark.parametrize(
    "image",
    [
        "wa:2.0",
        "us-docker.pkg.dev/demo/apps/wa-backend:2024.06.1",
        "localhost:5000/team/wa_backend",
        f"gcr.io/demo/wa@{DIGEST}",
        f"europe-west1-docker.pkg.dev/demo/apps/wa:v1.4@{DIGEST}",
    ],
)
def test_valid_images_are_accepted(emu: Emulator, image: str) -> None:
    result = deploy(services_client(emu), image=image).result(timeout=5)
    assert result.template.containers[0].image == image


def test_a_template_without_a_container_is_invalid(emu: Emulator) -> None:
    services = services_client(emu)
    template = run_v2.RevisionTemplate(revision=GREEN)
    with pytest.raises(exceptions.BadRequest, match="at least one container"):
        services.update_service(
            service=run_v2.Service(name=SERVICE, template=template), update_mask=mask("template")
        )


def test_sub_field_masks_keep_the_rest_of_the_template(emu: Emulator) -> None:
    services = services_client(emu)
    full = run_v2.RevisionTemplate(
        revision="wa-backend-00004-cfg",
        service_account="wa@demo.iam.gserviceaccount.com",
        max_instance_request_concurrency=40,
        containers=[
            run_v2.Container(
                image=BLUE_IMAGE,
                env=[run_v2.EnvVar(name="MODE", value="prod")],
                resources=run_v2.ResourceRequirements(limits={"memory": "1Gi"}),
            )
        ],
    )
    services.update_service(
        service=run_v2.Service(name=SERVICE, template=full), update_mask=mask("template")
    ).result(timeout=5)
    # a body whose template differs beyond containers and revision: only those two apply
    sparse = run_v2.RevisionTemplate(
        revision=GREEN, containers=[run_v2.Container(image=GREEN_IMAGE)]
    )
    result = services.update_service(
        service=run_v2.Service(name=SERVICE, template=sparse),
        update_mask=mask("template.containers", "template.revision"),
    ).result(timeout=5)
    assert result.template.service_account == "wa@demo.iam.gserviceaccount.com"
    assert result.template.max_instance_request_concurrency == 40
    assert result.template.revision == GREEN
    assert list(result.template.containers) == [run_v2.Container(image=GREEN_IMAGE)]
    assert statuses(result) == [(BLUE, 100, "")]  # traffic not in the mask


@pytest.mark.parametrize(
    "path", ["template.containers.image", "template.nope", "uid", "traffic.percent"]
)
def test_an_invalid_mask_path_is_invalid_argument(emu: Emulator, path: str) -> None:
    services = services_client(emu)
    with pytest.raises(exceptions.BadRequest, match="Invalid update mask"):
        deploy(services, paths=(path,))
    assert services.get_service(name=SERVICE).generation == 1


# -- 5. Monitoring sees green's share after each shift ----------------------------------------


@pytest.fixture
def timed() -> Iterator[tuple[Emulator, FakeClock]]:
    clock = FakeClock(1_750_000_020.0)  # on a minute: samples are per minute
    emulator = Emulator(clock=clock).start()
    emulator.monitoring.delay_s = 0  # exact numbers; the delay has tests of its own
    seed(emulator)
    try:
        yield emulator, clock
    finally:
        emulator.stop()


def test_monitoring_follows_green_through_the_shifts(timed: tuple[Emulator, FakeClock]) -> None:
    emulator, clock = timed
    services = services_client(emulator)
    emulator.cloudrun.new_revision_behaviour(error_rate=0.07)
    deploy(services).result(timeout=5)
    metrics = CloudMonitoring(
        emulator.env()["RUNBACK_EMULATOR_GRPC_HOST"], retry_deadline_s=2.0, initial_backoff_s=0.02
    )
    try:
        clock.now += 120
        at_zero = metrics.revision_metrics(REF, GREEN, *clock.window(120))
        assert (at_zero.requests, at_zero.error_rate) == (0, None)  # tagged, no traffic

        shift(services, (BLUE, 90), (GREEN, 10, "green"))
        clock.now += 300
        green = metrics.revision_metrics(REF, GREEN, *clock.window(300))
        blue = metrics.revision_metrics(REF, BLUE, *clock.window(300))
        assert green.requests == 600 and blue.requests == 5400  # 20 rps x 10% / 90% x 300 s
        assert green.requests / (green.requests + blue.requests) == pytest.approx(0.10)
        assert green.error_rate == pytest.approx(0.07, abs=0.005)
        assert blue.errors == 0

        shift(services, (BLUE, 50), (GREEN, 50, "green"))
        clock.now += 300
        green = metrics.revision_metrics(REF, GREEN, *clock.window(300))
        blue = metrics.revision_metrics(REF, BLUE, *clock.window(300))
        assert green.requests == blue.requests == 3000
    finally:
        metrics.close()


# -- the CloudRunAdmin adapter: start_deploy --------------------------------------------------


def admin(emulator: Emulator) -> CloudRunAdmin:
    return CloudRunAdmin(emulator.host, retry_deadline_s=1.5, initial_backoff_s=0.05)


def configure_blue(emulator: Emulator) -> None:
    """Blue with the env vars, resources and service account a real service has."""
    template = run_v2.RevisionTemplate(
        revision=BLUE.replace("00003", "00004"),
        service_account="wa@demo.iam.gserviceaccount.com",
        timeout="30s",
        containers=[
            run_v2.Container(
                image=BLUE_IMAGE,
                env=[
                    run_v2.EnvVar(name="MODE", value="prod"),
                    run_v2.EnvVar(name="DB_HOST", value="10.0.0.5"),
                ],
                resources=run_v2.ResourceRequirements(limits={"cpu": "2", "memory": "1Gi"}),
                ports=[run_v2.ContainerPort(container_port=8080)],
            )
        ],
    )
    services_client(emulator).update_service(
        service=run_v2.Service(name=SERVICE, template=template, traffic=pinned((BLUE, 100))),
        update_mask=mask("template", "traffic"),
    ).result(timeout=5)


CONFIGURED = BLUE.replace("00003", "00004")  # configure_blue's revision (0%)
GREEN5 = "wa-backend-00005-grn"


def test_start_deploy_creates_green_at_zero_percent_and_keeps_the_template(emu: Emulator) -> None:
    configure_blue(emu)
    cloudrun = admin(emu)
    before = cloudrun.get_service(REF)
    targets = [TrafficTarget(BLUE, 100), TrafficTarget(GREEN5, 0, "green")]
    operation = cloudrun.start_deploy(REF, GREEN_IMAGE, GREEN5, targets, before.etag)
    after = cloudrun.wait_operation(operation, timeout_s=5)
    assert after.serving() == {BLUE: 100}
    assert after.latest_ready_revision == GREEN5
    tagged = next(t for t in after.traffic if t.tag == "green")
    assert (tagged.revision, tagged.percent) == (GREEN5, 0)
    assert tagged.uri == f"{emu.url}/_svc/wa-backend/_tag/green"
    newest = cloudrun.list_revisions(REF)[0]
    assert (newest.name, newest.image, newest.ready) == (GREEN5, GREEN_IMAGE, True)

    call = emu.router.calls.list("run.services.patch")[-1]
    assert call.query["updateMask"] == ["template.containers,template.revision,traffic"]
    assert call.body["etag"] == before.etag
    template = services_client(emu).get_service(name=SERVICE).template
    assert template.revision == GREEN5
    assert template.service_account == "wa@demo.iam.gserviceaccount.com"
    assert template.timeout.total_seconds() == 30
    container = template.containers[0]
    assert container.image == GREEN_IMAGE
    assert [(e.name, e.value) for e in container.env] == [("MODE", "prod"), ("DB_HOST", "10.0.0.5")]
    assert dict(container.resources.limits) == {"cpu": "2", "memory": "1Gi"}
    assert container.ports[0].container_port == 8080
    green = revisions_client(emu).get_revision(name=f"{SERVICE}/revisions/{GREEN5}")
    assert [e.name for e in green.containers[0].env] == ["MODE", "DB_HOST"]
    assert served_by(f"{tagged.uri}/health") == Counter({GREEN5: 1})


def test_start_deploy_with_a_taken_name_is_revision_exists(emu: Emulator) -> None:
    configure_blue(emu)
    cloudrun = admin(emu)
    etag = cloudrun.get_service(REF).etag
    targets = [TrafficTarget(BLUE, 100), TrafficTarget(OLD, 0, "green")]
    with pytest.raises(RevisionExists) as raised:
        cloudrun.start_deploy(REF, GREEN_IMAGE, OLD, targets, etag)
    assert raised.value.reason == "revision_exists"
    assert not isinstance(raised.value, EtagConflict)
    assert len(emu.router.calls.list("run.services.patch")) == 2  # setup + one, no retry


def test_start_deploy_with_a_stale_etag_is_an_etag_conflict(emu: Emulator) -> None:
    cloudrun = admin(emu)
    targets = [TrafficTarget(BLUE, 100), TrafficTarget(GREEN, 0, "green")]
    with pytest.raises(EtagConflict):
        cloudrun.start_deploy(REF, GREEN_IMAGE, GREEN, targets, "stale-etag")
    assert cloudrun.list_revisions(REF)[0].name == BLUE


def test_start_deploy_refuses_a_bad_image_and_a_missing_name(emu: Emulator) -> None:
    cloudrun = admin(emu)
    etag = cloudrun.get_service(REF).etag
    targets = [TrafficTarget(BLUE, 100), TrafficTarget(GREEN, 0, "green")]
    with pytest.raises(CloudRunError) as raised:
        cloudrun.start_deploy(REF, "eu.gcr.io/demo/wa 1.4", GREEN, targets, etag)
    assert raised.value.reason == "invalid_argument"
    assert "image" in raised.value.detail
    patches = len(emu.router.calls.list("run.services.patch"))
    with pytest.raises(CloudRunError) as raised:
        cloudrun.start_deploy(REF, GREEN_IMAGE, "", targets, etag)
    assert raised.value.reason == "invalid_argument"
    assert len(emu.router.calls.list("run.services.patch")) == patches
