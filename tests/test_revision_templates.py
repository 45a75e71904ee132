"""New revisions are built from their base revision's whole template: a flag flip, a release and
a rollback drill after a rollback carry the base revision's settings (service account, scaling,
VPC access, volumes, timeout, concurrency, execution environment, labels), never those of the
revision rolled back from, which the service's template still holds. The real run_v2 client
against the Cloud Run emulator, whose sample revisions each have settings of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from google.cloud import run_v2
from sqlalchemy import select

from bot.gcp.cloudrun import CloudRunAdmin, template_from_revision
from bot.ports import EnvVar, ServiceRef, TrafficTarget
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.server import Emulator
from bot.store import Operation
from tests.conftest import sandbox_config
from tests.helpers import run

SERVICE = "wa-backend"
OLDER = "wa-backend-00002"  # timeout 120s, concurrency 40, min 1 / max 20, gen2, no VPC
NEWER = "wa-backend-00003"  # timeout 60s, concurrency 20, min 2 / max 50, gen2, VPC egress
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox(sandbox_config(), retry_deadline_s=1.5)
    try:
        yield sandbox
    finally:
        sandbox.close()


def settings(revision: run_v2.Revision) -> dict[str, object]:
    """What a revision took from its template, but its containers' images and environment."""
    return {
        "timeout": revision.timeout.total_seconds() if revision.timeout else None,
        "concurrency": revision.max_instance_request_concurrency,
        "scaling": (revision.scaling.min_instance_count, revision.scaling.max_instance_count),
        "environment": revision.execution_environment.name,
        "vpc": revision.vpc_access.egress.name if "vpc_access" in revision else "",
        "service_account": revision.service_account,
        "volumes": [v.name for v in revision.volumes],
        "release": revision.labels.get("release", ""),
    }


def newest(box: Sandbox, kind: str) -> Operation:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == kind)
        found = session.scalars(query.order_by(Operation.created_at.desc())).first()
    assert found is not None, f"no {kind}"
    return found


def rolled_back_to_older(box: Sandbox) -> None:
    assert OLDER in run(box, "as ana", f"/rollback {SERVICE} {OLDER} bad release")
    assert box.emulator.cloudrun.traffic(SERVICE)[0]["revision"] == OLDER


def test_a_flag_flip_after_a_rollback_keeps_the_base_revisions_settings(box: Sandbox) -> None:
    cloudrun = box.emulator.cloudrun
    assert settings(cloudrun.revision(OLDER)) != settings(cloudrun.revision(NEWER))
    rolled_back_to_older(box)
    run(box, "as marta", f"/flag {SERVICE} BETA_SEARCH on")
    flip = newest(box, "flag")
    assert flip.from_revision == OLDER and flip.state in ("watching", "succeeded"), flip.state
    flipped = cloudrun.revision(flip.to_revision)
    assert settings(flipped) == settings(cloudrun.revision(OLDER))
    assert cloudrun.revision_flags(flip.to_revision)["BETA_SEARCH"] == "true"


def test_a_release_after_a_rollback_builds_green_from_blues_settings(box: Sandbox) -> None:
    rolled_back_to_older(box)
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")
    release = newest(box, "release")
    green = box.emulator.cloudrun.revision(release.to_revision)
    assert settings(green) == settings(box.emulator.cloudrun.revision(OLDER))
    assert green.containers[-1].image == IMAGE


def test_a_drill_after_a_rollback_deploys_blues_settings(box: Sandbox) -> None:
    staging = "wa-backend-staging"
    assert "wa-backend-staging-00002" in run(
        box, "as ana", f"/rollback {staging} wa-backend-staging-00002"
    )
    run(box, "as pablo", "/ops drill")
    drill = newest(box, "drill")
    test_revision = box.emulator.cloudrun.revision(drill.to_revision)
    blue = box.emulator.cloudrun.revision("wa-backend-staging-00002")
    assert settings(test_revision) == settings(blue)


def test_every_setting_of_the_base_revision_reaches_the_new_one(emulator: Emulator) -> None:
    """Service account, volumes, VPC access, session affinity... of the base revision; none of
    the rolled-back-from one's; and no label of Cloud Run's own (a v2 template refuses them)."""
    older = {
        "serviceAccount": "wa-old@p.iam.gserviceaccount.com",
        "timeout": "200s",
        "sessionAffinity": True,
        "volumes": [{"name": "cache", "emptyDir": {"medium": "MEMORY", "sizeLimit": "64Mi"}}],
        "annotations": {"team": "checkout"},
        "labels": {"tier": "one"},
    }
    newer = {
        "serviceAccount": "wa-new@p.iam.gserviceaccount.com",
        "timeout": "30s",
        "vpcAccess": {"connector": "projects/p/locations/us-central1/connectors/c"},
        "labels": {"tier": "two"},
    }
    emulator.cloudrun.seed_service(
        "p",
        "us-central1",
        "svc",
        [
            {"name": "svc-00001", "image": "us-docker.pkg.dev/p/a/svc:1", "template": older},
            {"name": "svc-00002", "image": "us-docker.pkg.dev/p/a/svc:2", "template": newer},
        ],
    )
    admin = CloudRunAdmin(emulator.host, retry_deadline_s=2.0)
    ref = ServiceRef("p", "us-central1", "svc")
    state = admin.get_service(ref)
    admin.wait_operation(
        admin.start_traffic_update(ref, [TrafficTarget("svc-00001", 100)], state.etag), 5
    )
    state = admin.get_service(ref)
    operation = admin.start_env_update(
        ref,
        "svc-00001",
        EnvVar("FEATURE_FLAG_X", "true"),
        "svc-00001-flag",
        [TrafficTarget("svc-00001", 100), TrafficTarget("svc-00001-flag", 0, "flag")],
        state.etag,
    )
    admin.wait_operation(operation, 5)
    made = emulator.cloudrun.revision("svc-00001-flag")
    base = emulator.cloudrun.revision("svc-00001")
    assert made.service_account == "wa-old@p.iam.gserviceaccount.com"
    assert made.timeout.total_seconds() == 200 and made.session_affinity
    assert [v.name for v in made.volumes] == ["cache"] and "vpc_access" not in made
    assert made.labels["tier"] == "one" and made.annotations["team"] == "checkout"
    assert template_from_revision(made).labels == {"tier": "one"}, "no Cloud Run label"
    assert [e.name for e in made.containers[0].env] == ["FEATURE_FLAG_X"]
    pinned = emulator.cloudrun.images.resolve(base.containers[0].image)
    assert made.containers[0].image == pinned, "the base's image, by the digest it runs"


# -- the same image, by digest ----------------------------------------------------------------

TAGGED = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.2.0"  # wa-backend-00003's image


def digests(emulator: Emulator, revision: str) -> list[str]:
    """The revision's ``containerStatuses[].imageDigest``, as the REST API answers it."""
    project, region = emulator.cloudrun.location_of(SERVICE)
    name = f"projects/{project}/locations/{region}/services/{SERVICE}/revisions/{revision}"
    answer = requests.get(f"{emulator.url}/v2/{name}", timeout=5)
    answer.raise_for_status()
    return [status["imageDigest"] for status in answer.json()["containerStatuses"]]


def test_tags_resolve_to_digests_when_a_revision_is_made_and_can_move(box: Sandbox) -> None:
    emulator = box.emulator
    before = digests(emulator, NEWER)
    assert before[-1].startswith("us-docker.pkg.dev/runback-sandbox/apps/wa-backend@sha256:")
    moved = requests.post(
        f"{emulator.url}/_emulator/images", json={"image": TAGGED}, timeout=5
    ).json()["resolved"]
    assert moved != before[-1] and digests(emulator, NEWER) == before, "a revision keeps its own"
    assert emulator.cloudrun.images.resolve(TAGGED) == moved, "new revisions get the new one"
    refused = requests.post(
        f"{emulator.url}/_emulator/images", json={"image": TAGGED, "digest": "nope"}, timeout=5
    )
    assert refused.status_code == 400


def test_a_flip_after_the_tag_moved_runs_the_same_code(box: Sandbox) -> None:
    """The base revision's image was a tag that has since been pushed again: the flip pins
    the digest the base revision runs, not whatever the tag names now."""
    box.emulator.cloudrun.move_tag(TAGGED)
    run(box, "as marta", f"/flag {SERVICE} NEW_CHECKOUT on")
    flip = newest(box, "flag")
    assert flip.from_revision == NEWER and flip.state in ("watching", "succeeded"), flip.state
    assert digests(box.emulator, flip.to_revision) == digests(box.emulator, NEWER)
    ingress = box.emulator.cloudrun.revision(flip.to_revision).containers[-1]
    assert ingress.image == digests(box.emulator, NEWER)[-1]
    assert box.emulator.cloudrun.images.resolve(TAGGED) not in digests(
        box.emulator, flip.to_revision
    )
