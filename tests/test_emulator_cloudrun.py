"""The Cloud Run Admin v2 emulator, driven by the real run_v2 REST clients over a socket."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.future.polling import DEFAULT_POLLING
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from bot.sandbox.emulator.server import Emulator

PARENT = "projects/demo/locations/europe-west1"
SERVICE = f"{PARENT}/services/wa-backend"
OLD, CURRENT = "wa-backend-00001-old", "wa-backend-00002-cur"
REVISION_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAST_POLL = DEFAULT_POLLING.with_delay(initial=0.05, maximum=0.2).with_timeout(5)


def seed(emulator: Emulator, traffic: dict[str, int] | None = None, **kwargs: Any) -> None:
    emulator.cloudrun.seed_service(
        "demo",
        "europe-west1",
        "wa-backend",
        [
            {"name": OLD, "image": "eu.gcr.io/demo/wa:1.0", "age_s": 7200},
            {"name": CURRENT, "image": "eu.gcr.io/demo/wa:1.1", "age_s": 600},
        ],
        traffic or {CURRENT: 100},
        **kwargs,
    )


def clients(emulator: Emulator) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
    options = {
        "credentials": AnonymousCredentials(),
        "transport": "rest",
        "client_options": ClientOptions(api_endpoint=emulator.url),
    }
    return run_v2.ServicesClient(**options), run_v2.RevisionsClient(**options)


def pinned(*targets: tuple[str, int] | tuple[str, int, str]) -> list[run_v2.TrafficTarget]:
    return [
        run_v2.TrafficTarget(
            type_=REVISION_TYPE, revision=t[0], percent=t[1], tag=t[2] if len(t) > 2 else ""
        )
        for t in targets
    ]


def update_traffic(
    services: run_v2.ServicesClient, traffic: list[run_v2.TrafficTarget], etag: str = ""
) -> Any:
    service = run_v2.Service(name=SERVICE, etag=etag, traffic=traffic)
    return services.update_service(
        service=service, update_mask=field_mask_pb2.FieldMask(paths=["traffic"])
    )


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    seed(emulator)
    return emulator


# -- services and revisions -------------------------------------------------------------------


def test_get_service_has_urls_traffic_and_conditions(emu: Emulator) -> None:
    services, _ = clients(emu)
    service = services.get_service(name=SERVICE)
    assert service.uri == f"{emu.url}/_svc/wa-backend"
    assert service.generation == service.observed_generation == 1
    assert service.etag and not service.reconciling
    assert service.terminal_condition.state == SUCCEEDED
    assert service.latest_ready_revision == f"{SERVICE}/revisions/{CURRENT}"
    assert [(s.revision, s.percent) for s in service.traffic_statuses] == [(CURRENT, 100)]
    assert service.template.containers[0].image == "eu.gcr.io/demo/wa:1.1"
    call = emu.router.calls.list("run.services.get")[-1]
    assert call.query["$alt"] == ["json;enum-encoding=int"]


def test_list_services_pages_through_every_service(emu: Emulator) -> None:
    emu.cloudrun.seed_service(
        "demo", "europe-west1", "billing", [{"name": "billing-00001-aaa", "image": "img:1"}]
    )
    services, _ = clients(emu)
    names = [s.name for s in services.list_services(request={"parent": PARENT, "page_size": 1})]
    assert names == [f"{PARENT}/services/billing", SERVICE]
    assert len(emu.router.calls.list("run.services.list")) == 2
    assert list(services.list_services(parent="projects/demo/locations/us-east1")) == []


def test_unknown_service_is_not_found(emu: Emulator) -> None:
    services, _ = clients(emu)
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=f"{PARENT}/services/nope")


def test_revisions_newest_first_with_image_service_and_ready_condition(emu: Emulator) -> None:
    _, revisions = clients(emu)
    listed = list(revisions.list_revisions(request={"parent": SERVICE, "page_size": 1}))
    assert [r.name.rsplit("/", 1)[1] for r in listed] == [CURRENT, OLD]
    assert len(emu.router.calls.list("run.revisions.list")) == 2
    old = revisions.get_revision(name=f"{SERVICE}/revisions/{OLD}")
    assert old.service == "wa-backend"
    assert old.containers[0].image == "eu.gcr.io/demo/wa:1.0"
    assert [(c.type_, c.state) for c in old.conditions] == [("Ready", SUCCEEDED)]
    assert old.create_time < listed[0].create_time
    assert old.labels["serving.knative.dev/service"] == "wa-backend"
    with pytest.raises(exceptions.NotFound):
        revisions.get_revision(name=f"{SERVICE}/revisions/wa-backend-09999-zzz")


def test_enums_are_strings_without_the_int_encoding_parameter(emu: Emulator) -> None:
    body = requests.get(f"{emu.url}/v2/{SERVICE}", timeout=5).json()
    assert body["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
    assert body["trafficStatuses"][0]["type"] == "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


# -- updates and operations -------------------------------------------------------------------


def test_traffic_update_operation_result_parses_strictly(emu: Emulator) -> None:
    services, _ = clients(emu)
    before = services.get_service(name=SERVICE)
    operation = update_traffic(services, pinned((OLD, 90), (CURRENT, 10, "canary")), before.etag)
    result = operation.result(timeout=5)
    assert isinstance(result, run_v2.Service)
    assert isinstance(operation.metadata, run_v2.Service)
    assert result.generation == result.observed_generation == 2
    assert result.etag != before.etag and not result.reconciling
    statuses = [(s.revision, s.percent, s.tag, s.uri) for s in result.traffic_statuses]
    assert statuses == [
        (OLD, 90, "", ""),
        (CURRENT, 10, "canary", f"{emu.url}/_svc/wa-backend/_tag/canary"),
    ]
    strict = services.get_operation({"name": operation.operation.name})  # strict JSON parsing
    assert strict.done and strict.response.type_url.endswith("google.cloud.run.v2.Service")
    call = emu.router.calls.list("run.services.patch")[-1]
    assert call.query["updateMask"] == ["traffic"]
    assert call.body["traffic"][0] == {"type": 2, "revision": OLD, "percent": 90}
    assert emu.cloudrun.traffic("wa-backend") == [
        {"revision": OLD, "percent": 90, "tag": ""},
        {"revision": CURRENT, "percent": 10, "tag": "canary"},
    ]


def test_percents_not_summing_to_100_are_invalid(emu: Emulator) -> None:
    services, _ = clients(emu)
    with pytest.raises(exceptions.BadRequest, match="sum to 100"):
        update_traffic(services, pinned((OLD, 60), (CURRENT, 30)))
    assert services.get_service(name=SERVICE).generation == 1


def test_stale_etag_is_a_conflict(emu: Emulator) -> None:
    services, _ = clients(emu)
    with pytest.raises(exceptions.Conflict):
        update_traffic(services, pinned((OLD, 100)), etag="stale-etag")


def test_unknown_revision_fails_the_operation_not_the_request(emu: Emulator) -> None:
    services, _ = clients(emu)
    operation = update_traffic(services, pinned(("wa-backend-00042-nop", 100)))
    with pytest.raises(exceptions.NotFound, match="wa-backend-00042-nop"):
        operation.result(timeout=5)
    service = services.get_service(name=SERVICE)
    assert service.terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED
    assert service.generation == service.observed_generation == 2
    assert [(s.revision, s.percent) for s in service.traffic_statuses] == [(CURRENT, 100)]


def test_injected_operation_failure_applies_to_the_next_update_only(emu: Emulator) -> None:
    url = f"{emu.url}/_emulator/operations/fail"
    armed = requests.post(url, json={"message": "quota exceeded", "code": 8}, timeout=5)
    assert armed.json() == {"pending_failures": 1}
    services, _ = clients(emu)
    with pytest.raises(exceptions.ResourceExhausted, match="quota exceeded"):
        update_traffic(services, pinned((OLD, 100))).result(timeout=5)
    assert emu.cloudrun.traffic("wa-backend")[0]["revision"] == CURRENT
    update_traffic(services, pinned((OLD, 100))).result(timeout=5)
    assert emu.cloudrun.traffic("wa-backend")[0]["revision"] == OLD


def test_malformed_patch_body_is_a_400(emu: Emulator) -> None:
    url = f"{emu.url}/v2/{SERVICE}?updateMask=traffic"
    bad = requests.patch(url, json={"traffic": [{"percentage": 100}]}, timeout=5)
    assert bad.status_code == 400
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    by_name = {
        "traffic": [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": OLD, "percent": 100}
        ]
    }
    assert requests.patch(url, json=by_name, timeout=5).status_code == 200


def test_operation_delay_keeps_the_service_reconciling_until_done(emu: Emulator) -> None:
    services, _ = clients(emu)
    requests.post(f"{emu.url}/_emulator/config", json={"operation_delay_ms": 300}, timeout=5)
    operation = update_traffic(services, pinned((OLD, 100)))
    assert not operation.done()
    during = services.get_service(name=SERVICE)
    assert during.reconciling and during.observed_generation == 1
    assert [t.revision for t in during.traffic] == [OLD]  # the spec changed at once
    assert [s.revision for s in during.traffic_statuses] == [CURRENT]  # the status did not
    assert emu.cloudrun.traffic("wa-backend")[0]["revision"] == CURRENT
    result = operation.result(polling=FAST_POLL)
    assert not result.reconciling and result.observed_generation == 2
    assert [s.revision for s in result.traffic_statuses] == [OLD]


def test_template_change_creates_a_ready_revision_and_latest_follows_it(emu: Emulator) -> None:
    services, revisions = clients(emu)
    template = run_v2.RevisionTemplate(containers=[run_v2.Container(image="wa:2.0")])
    latest = [run_v2.TrafficTarget(type_=LATEST_TYPE, percent=100)]
    operation = services.update_service(
        service=run_v2.Service(name=SERVICE, template=template, traffic=latest)
    )
    result = operation.result(timeout=5)
    new = result.latest_ready_revision.rsplit("/", 1)[1]
    assert new.startswith("wa-backend-00002-") and new not in (OLD, CURRENT)
    assert [(s.type_, s.revision) for s in result.traffic_statuses] == [(LATEST_TYPE, new)]
    listed = list(revisions.list_revisions(parent=SERVICE))
    assert listed[0].containers[0].image == "wa:2.0"
    assert listed[0].conditions[0].state == SUCCEEDED
    assert emu.cloudrun.behaviour(new)["healthz_status"] == 200


def test_update_mask_limits_what_changes(emu: Emulator) -> None:
    services, _ = clients(emu)
    template = run_v2.RevisionTemplate(
        revision="wa-backend-green", containers=[run_v2.Container(image="wa:3.0")]
    )
    service = run_v2.Service(name=SERVICE, template=template, traffic=pinned((OLD, 100)))
    operation = services.update_service(
        service=service, update_mask=field_mask_pb2.FieldMask(paths=["template"])
    )
    result = operation.result(timeout=5)
    assert result.latest_ready_revision.endswith("/revisions/wa-backend-green")
    assert [(t.revision, t.percent) for t in result.traffic] == [(CURRENT, 100)]


def test_validate_only_changes_nothing(emu: Emulator) -> None:
    services, _ = clients(emu)
    request = run_v2.UpdateServiceRequest(
        service=run_v2.Service(name=SERVICE, traffic=pinned((OLD, 100))),
        update_mask=field_mask_pb2.FieldMask(paths=["traffic"]),
        validate_only=True,
    )
    services.update_service(request=request).result(timeout=5)
    assert services.get_service(name=SERVICE).generation == 1
    assert emu.cloudrun.traffic("wa-backend")[0]["revision"] == CURRENT


# -- the services' own endpoints --------------------------------------------------------------


def serving(url: str, times: int) -> Counter[str]:
    return Counter(requests.get(url, timeout=5).headers["X-Serving-Revision"] for _ in range(times))


def test_service_url_follows_the_actual_traffic_split(emulator: Emulator) -> None:
    seed(emulator, {OLD: 80, CURRENT: 20}, tags={"blue": OLD})
    base = f"{emulator.url}/_svc/wa-backend"
    assert serving(f"{base}/health", 10) == Counter({OLD: 8, CURRENT: 2})
    assert serving(f"{base}/_tag/blue/health", 3) == Counter({OLD: 3})
    assert requests.get(f"{base}/_tag/nope/health", timeout=5).status_code == 404
    assert len(emulator.router.calls.list("service.healthz")) == 14


def test_healthz_and_metrics_follow_behaviour(emu: Emulator) -> None:
    base = f"{emu.url}/_svc/wa-backend"
    healthy = requests.get(f"{base}/health", timeout=5)
    assert healthy.status_code == 200 and healthy.json()["revision"] == CURRENT
    emu.cloudrun.set_behaviour(CURRENT, error_rate=0.5, rps=1000)
    first = _counter(requests.get(f"{base}/metrics", timeout=5).text, "500")
    deadline = time.monotonic() + 5  # the counters grow with time: wait for it, not a fixed time
    metrics = requests.get(f"{base}/metrics", timeout=5)
    while _counter(metrics.text, "500") <= first and time.monotonic() < deadline:
        metrics = requests.get(f"{base}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert _counter(metrics.text, "500") > first
    assert 'quantile="0.95"} 0.1200' in metrics.text
    emu.cloudrun.set_behaviour(CURRENT, healthz_status=503)
    assert requests.get(f"{base}/health", timeout=5).status_code == 503
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 500


def _counter(text: str, code: str) -> int:
    line = next(
        x
        for x in text.splitlines()
        if x.startswith("http_requests_total") and f'code="{code}"' in x
    )
    return int(line.rsplit(" ", 1)[1])


# -- control API ------------------------------------------------------------------------------


def test_control_api_seeds_sets_behaviour_and_reads_traffic(emulator: Emulator) -> None:
    seeded = requests.post(
        f"{emulator.url}/_emulator/services",
        timeout=5,
        json={
            "project": "demo",
            "region": "europe-west1",
            "name": "api",
            "revisions": [{"name": "api-00001-aaa", "image": "api:1", "age_s": 60}],
            "traffic": {"api-00001-aaa": 100},
        },
    )
    assert seeded.status_code == 200
    assert seeded.json()["name"] == f"{PARENT}/services/api"
    url = f"{emulator.url}/_emulator/revisions/api-00001-aaa/behaviour"
    changed = requests.post(url, json={"p95_ms": 2500}, timeout=5).json()
    assert changed == {"healthz_status": 200, "error_rate": 0.0, "p95_ms": 2500.0, "rps": 20.0}
    assert requests.get(url, timeout=5).json()["p95_ms"] == 2500.0
    assert requests.post(url, json={"colour": "red"}, timeout=5).status_code == 400
    missing = f"{emulator.url}/_emulator/revisions/nope/behaviour"
    assert requests.get(missing, timeout=5).status_code == 404
    traffic = requests.get(f"{emulator.url}/_emulator/services/api/traffic", timeout=5).json()
    assert traffic == [{"revision": "api-00001-aaa", "percent": 100, "tag": ""}]
    bad = requests.post(f"{emulator.url}/_emulator/services", json={"name": "x"}, timeout=5)
    assert bad.status_code == 400
    assert emulator.router.calls.list() == []  # control calls are not recorded


def test_python_api_rejects_bad_seeds_and_unknown_names(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        seed(emulator, {OLD: 50, CURRENT: 20})
    with pytest.raises(ValueError, match="unknown revision"):
        seed(emulator, {"wa-backend-00009-zzz": 100})
    with pytest.raises(KeyError, match="no "):
        emulator.cloudrun.traffic("wa-backend")
    seed(emulator)
    with pytest.raises(KeyError, match="no "):
        emulator.cloudrun.set_behaviour("nope", error_rate=0.5)
    with pytest.raises(ValueError, match="unknown behaviour field"):
        emulator.cloudrun.set_behaviour(OLD, colour="red")
    emulator.cloudrun.reset()
    with pytest.raises(KeyError, match="no "):
        emulator.cloudrun.behaviour(OLD)
