"""A restored revision may read its secret (issue 16, item 4): Cloud Run refuses a revision
whose service account cannot read a secret it references, so a restore that puts the clone's
URL in a new secret lets that revision's service account read that secret, and nothing more.
The emulators model it: per-secret IAM in Secret Manager, the refusal in Cloud Run."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bot.gcp.retrying import emulator_options
from bot.ops.restore.states import RestoreData
from bot.ports import CloudRunError, EnvVar, TrafficTarget
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.cloudrun import DEFAULT_SERVICE_ACCOUNT
from bot.sandbox.emulator.sqladmin import FIRST_RUN_ID
from tests.conftest import sandbox_config
from tests.helpers import run
from tests.test_database_flows import PROJECT, ask_and_approve, latest

STAGING = "wa-backend-staging"
MEMBER = f"serviceAccount:{DEFAULT_SERVICE_ACCOUNT}"


@pytest.fixture
def box(caplog: pytest.LogCaptureFixture) -> Iterator[Sandbox]:
    caplog.set_level(logging.INFO)
    sandbox = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)
    try:
        yield sandbox
    finally:
        sandbox.close()


def test_the_new_secret_is_readable_by_the_revisions_service_account_only(box: Sandbox) -> None:
    ask_and_approve(box, STAGING, str(FIRST_RUN_ID + 6))
    run(box, "wait 6m", "wait 11m")
    operation = latest(box, "restore")
    assert operation.state == "judging", RestoreData.of(operation).outcome
    secret = f"projects/{PROJECT}/secrets/{RestoreData.of(operation).new_var.secret}"
    assert box.emulator.secrets.members(secret) == [MEMBER], "that one account, that one secret"
    old = f"projects/{PROJECT}/secrets/wa-backend-staging-database-url"
    assert box.emulator.secrets.members(old) == [MEMBER], "the old secret's policy as it was"
    assert "secretmanager.accessor_granted" in [
        r.action for r in box.runtime.deps.store.journal.audit()
    ]


def test_cloud_run_refuses_a_revision_that_cannot_read_its_secret(box: Sandbox) -> None:
    deps = box.runtime.deps
    box.emulator.secrets.seed_secret(PROJECT, "nobody-may-read", "x")
    ref = deps.service_ref(box.config.service(STAGING))
    state = deps.cloudrun.get_service(ref)
    base = max(state.serving().items(), key=lambda share: share[1])[0]
    var = EnvVar("DATABASE_URL", secret="nobody-may-read", secret_version="1")
    targets = [TrafficTarget(base, 100)]
    name = f"{STAGING}-09999-abc"
    op = deps.cloudrun.start_env_update(ref, base, var, name, targets, state.etag)
    with pytest.raises(CloudRunError) as refused:
        deps.cloudrun.wait_operation(op, 30)
    assert "Permission denied on secret: projects/runback-sandbox/secrets/nobody-may-read/" in (
        refused.value.detail
    )
    assert "roles/secretmanager.secretAccessor" in refused.value.detail
    revision = deps.cloudrun.get_revision(ref, name)
    assert not revision.ready and "Permission denied on secret" in revision.ready_message
    assert deps.cloudrun.get_service(ref).serving() == {base: 100}


def test_secret_manager_iam_speaks_the_real_rest_shapes(box: Sandbox) -> None:
    from google.api_core.exceptions import Conflict
    from google.cloud import secretmanager_v1

    host = box.emulator.env()["RUNBACK_EMULATOR_HOST"]
    client = secretmanager_v1.SecretManagerServiceClient(**emulator_options(host))
    name = box.emulator.secrets.seed_secret(PROJECT, "iam-shapes", "x")
    policy = client.get_iam_policy(request={"resource": name})
    assert not policy.bindings and policy.etag
    policy.bindings.add(role="roles/secretmanager.secretAccessor", members=[MEMBER])
    client.set_iam_policy(request={"resource": name, "policy": policy})
    assert box.emulator.secrets.can_access(name, MEMBER)
    assert not box.emulator.secrets.can_access(
        name, "serviceAccount:other@x.iam.gserviceaccount.com"
    )

    with pytest.raises(Conflict):  # the etag read before that change is stale now
        client.set_iam_policy(request={"resource": name, "policy": policy})
    box.emulator.secrets.caller_permissions = frozenset({"secretmanager.versions.access"})
    asked = ["secretmanager.versions.access", "secretmanager.versions.add"]
    answer = client.test_iam_permissions(request={"resource": name, "permissions": asked})
    assert list(answer.permissions) == ["secretmanager.versions.access"]
    assert box.runtime.deps.secrets.test_permissions(PROJECT, "iam-shapes", asked) == [
        "secretmanager.versions.access"
    ]
