"""New revisions are built from their base revision's whole template: a flag flip, a release and
a rollback drill after a rollback carry the base revision's settings (service account, scaling,
VPC access, volumes, timeout, concurrency, execution environment, labels), never those of the
revision rolled back from, which the service's template still holds. The real run_v2 client
against the Cloud Run emulator, whose sample revisions each have settings of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.cloud import run_v2
from sqlalchemy import select

from bot.gcp.cloudrun import CloudRunAdmin, template_from_revision
from bot.ports import EnvVar, ServiceRef, TrafficTarget
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.server import Emulator
from bot.store import Operation
from tests.conftest import sandbox_config

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


def run(box: Sandbox, *lines: str) -> str:
    return "\n".join(out for line in lines for out in box.run_line(line))


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
    assert made.containers[0].image == base.containers[0].image
