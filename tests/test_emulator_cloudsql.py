"""The Cloud SQL Admin and Secret Manager emulators, through Google's own client libraries
(``google-cloud-sql``'s sqladmin_v1beta4 and ``google-cloud-secret-manager``, REST) and
Runback's adapters, over a real socket."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager_v1 as sm
from google.cloud import sqladmin_v1beta4 as sql

from bot.gcp.cloudrun import CloudRunAdmin
from bot.gcp.cloudsql import CloudSqlAdmin
from bot.gcp.secrets import SecretManager
from bot.ports import CloudSqlError, EnvVar, SecretsError, ServiceRef, TrafficTarget
from bot.sandbox.emulator.cloudrun import DEFAULT_SERVICE_ACCOUNT
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.secretmanager import ACCESSOR
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.emulator.sqladmin import FIRST_RUN_ID

P = "proj"
PASSWORD = "pw-Never-Shown-42"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(clock: Clock) -> Iterator[Emulator]:
    emulator = Emulator(clock=clock).start()
    emulator.sqladmin.seed_instance(P, "orders-db")
    emulator.secrets.seed_secret(P, "orders-url", f"postgresql://app:{PASSWORD}@10.20.0.3/o")
    try:
        yield emulator
    finally:
        emulator.stop()


def options(emu: Emulator) -> dict:
    return {
        "transport": "rest",
        "credentials": AnonymousCredentials(),
        "client_options": ClientOptions(api_endpoint=f"http://{emu.host}"),
    }


def adapter(emu: Emulator) -> CloudSqlAdmin:
    return CloudSqlAdmin(emu.host, retry_deadline_s=1.5, initial_backoff_s=0.02)


def secrets(emu: Emulator) -> SecretManager:
    return SecretManager(emu.host, retry_deadline_s=1.5, initial_backoff_s=0.02)


# -- Cloud SQL Admin, raw client -------------------------------------------------------------


def test_an_operation_goes_pending_running_done_with_integer_enums(
    emu: Emulator, clock: Clock
) -> None:
    runs = sql.SqlBackupRunsServiceClient(**options(emu))
    operations = sql.SqlOperationsServiceClient(**options(emu))
    body = sql.BackupRun(description="Pre-deployment: test")
    started = runs.insert(request={"project": P, "instance": "orders-db", "body": body})
    assert started.status == sql.Operation.SqlOperationStatus.PENDING
    assert started.operation_type == sql.Operation.SqlOperationType.BACKUP_VOLUME
    assert started.kind == "sql#operation" and started.backup_context.backup_id
    sent = emu.router.calls.list("sql.backupRuns.insert")[-1]
    assert sent.query["$alt"] == ["json;enum-encoding=int"]
    raw = requests.get(
        f"{emu.url}/sql/v1beta4/projects/{P}/operations/{started.name}",
        params={"$alt": "json;enum-encoding=int"},
        timeout=5,
    ).json()
    assert raw["status"] == 1 and raw["operationType"] == 9  # PENDING, BACKUP_VOLUME
    assert raw["backupContext"]["backupId"] == str(started.backup_context.backup_id)

    def status() -> str:
        found = operations.get(request={"project": P, "operation": started.name})
        return sql.Operation.SqlOperationStatus(found.status).name

    clock.now += 3
    assert status() == "RUNNING"
    clock.now += 200
    assert status() == "DONE"
    listed = runs.list(request={"project": P, "instance": "orders-db"})
    newest = next(iter(listed))
    assert newest.id == started.backup_context.backup_id
    assert newest.type_ == sql.SqlBackupRunType.ON_DEMAND
    assert newest.status == sql.SqlBackupRunStatus.SUCCESSFUL
    assert newest.description == "Pre-deployment: test"


def test_backup_runs_are_newest_first_and_paged(emu: Emulator) -> None:
    runs = sql.SqlBackupRunsServiceClient(**options(emu))
    pager = runs.list(request={"project": P, "instance": "orders-db", "max_results": 2})
    ids = [run.id for run in pager]
    assert ids == [FIRST_RUN_ID + 3, FIRST_RUN_ID + 2, FIRST_RUN_ID + 1]
    assert len(emu.router.calls.list("sql.backupRuns.list")) == 2, "two pages"
    assert all(
        run.type_ == sql.SqlBackupRunType.AUTOMATED
        for run in runs.list(request={"project": P, "instance": "orders-db"})
    )


def test_restoring_to_another_instance_needs_that_instance(emu: Emulator, clock: Clock) -> None:
    """Cloud SQL restores into an existing target (instances.restoreBackup's URL names it)."""
    instances = sql.SqlInstancesServiceClient(**options(emu))
    context = sql.RestoreBackupContext(backup_run_id=FIRST_RUN_ID + 3, instance_id="orders-db")
    body = sql.InstancesRestoreBackupRequest(restore_backup_context=context)
    with pytest.raises(exceptions.NotFound):
        instances.restore_backup(request={"project": P, "instance": "clone", "body": body})

    source = instances.get(request={"project": P, "instance": "orders-db"})
    clone = sql.DatabaseInstance(
        name="clone",
        region=source.region,
        database_version=source.database_version,
        settings=sql.Settings(tier=source.settings.tier),
    )
    created = instances.insert(request={"project": P, "body": clone})
    assert created.operation_type == sql.Operation.SqlOperationType.CREATE
    state = instances.get(request={"project": P, "instance": "clone"}).state
    assert state == sql.DatabaseInstance.SqlInstanceState.PENDING_CREATE
    with pytest.raises(exceptions.Conflict):  # one operation at a time on an instance
        instances.restore_backup(request={"project": P, "instance": "clone", "body": body})
    clock.now += 301
    found = instances.get(request={"project": P, "instance": "clone"})
    assert found.state == sql.DatabaseInstance.SqlInstanceState.RUNNABLE
    assert found.connection_name == f"{P}:us-central1:clone"

    restored = instances.restore_backup(request={"project": P, "instance": "clone", "body": body})
    assert restored.operation_type == sql.Operation.SqlOperationType.RESTORE_VOLUME
    state = instances.get(request={"project": P, "instance": "clone"}).state
    assert state == sql.DatabaseInstance.SqlInstanceState.MAINTENANCE
    clock.now += 601
    state = instances.get(request={"project": P, "instance": "clone"}).state
    assert state == sql.DatabaseInstance.SqlInstanceState.RUNNABLE


def test_a_restore_checks_the_backup_and_the_database_version(emu: Emulator) -> None:
    emu.sqladmin.seed_instance(P, "mysql-db", database_version="MYSQL_8_0")
    instances = sql.SqlInstancesServiceClient(**options(emu))

    def restore(run_id: int, target: str = "mysql-db") -> None:
        context = sql.RestoreBackupContext(backup_run_id=run_id, instance_id="orders-db")
        body = sql.InstancesRestoreBackupRequest(restore_backup_context=context)
        instances.restore_backup(request={"project": P, "instance": target, "body": body})

    with pytest.raises(exceptions.BadRequest, match="same database version"):
        restore(FIRST_RUN_ID + 3)
    with pytest.raises(exceptions.NotFound, match="backup run"):
        restore(42, target="orders-db")


def test_faults_not_found_and_permission_denied(emu: Emulator) -> None:
    instances = sql.SqlInstancesServiceClient(**options(emu))
    with pytest.raises(exceptions.NotFound):
        instances.get(request={"project": P, "instance": "nope"})
    emu.router.faults.add(Fault("sql.instances.get", 403, message="not allowed"))
    with pytest.raises(exceptions.Forbidden):
        instances.get(request={"project": P, "instance": "orders-db"})


def test_a_failed_operation_ends_done_with_its_error(emu: Emulator, clock: Clock) -> None:
    emu.sqladmin.fail_next_operations("BACKUP_VOLUME", "disk quota exceeded")
    sqladmin = adapter(emu)
    started = sqladmin.start_backup(P, "orders-db", "x")
    clock.now += 500
    done = sqladmin.get_operation(P, started.name)
    assert done.done and done.error == "disk quota exceeded"
    assert sqladmin.list_backups(P, "orders-db", 1)[0].status == "FAILED"


# -- the CloudSql adapter --------------------------------------------------------------------


def test_the_adapter_retries_unavailable_then_answers(emu: Emulator) -> None:
    emu.router.faults.add(Fault("sql.instances.get", 503, times=2))
    instance = adapter(emu).get_instance(P, "orders-db")
    assert instance.runnable and instance.connection_name == f"{P}:us-central1:orders-db"
    assert instance.database_version == "POSTGRES_15" and instance.ip_addresses == ("10.20.0.3",)
    assert len(emu.router.calls.list("sql.instances.get")) == 3


def test_the_adapter_gives_up_after_its_deadline_with_a_clear_error(emu: Emulator) -> None:
    emu.router.faults.add(Fault("sql.backupRuns.list", 503, times=None))
    with pytest.raises(CloudSqlError) as raised:
        adapter(emu).list_backups(P, "orders-db", 5)
    assert raised.value.reason == "unavailable"
    assert 2 <= len(emu.router.calls.list("sql.backupRuns.list")) < 40


@pytest.mark.parametrize(("status", "reason"), [(403, "permission_denied"), (404, "not_found")])
def test_the_adapter_says_why_it_was_refused(emu: Emulator, status: int, reason: str) -> None:
    emu.router.faults.add(Fault("sql.backupRuns.insert", status))
    with pytest.raises(CloudSqlError) as raised:
        adapter(emu).start_backup(P, "orders-db", "x")
    assert raised.value.reason == reason
    assert len(emu.router.calls.list("sql.backupRuns.insert")) == 1, "never retried"


def test_a_creating_call_is_not_retried_after_a_timeout(emu: Emulator) -> None:
    """The first attempt may have been applied: a retry would start a second backup."""
    emu.router.faults.add(Fault("sql.backupRuns.insert", 504, after=True))
    with pytest.raises(CloudSqlError):
        adapter(emu).start_backup(P, "orders-db", "x")
    assert len(emu.router.calls.list("sql.backupRuns.insert")) == 1


def test_the_adapter_follows_create_and_restore(emu: Emulator, clock: Clock) -> None:
    sqladmin = adapter(emu)
    source = sqladmin.get_instance(P, "orders-db")
    created = sqladmin.start_create_instance(source, "orders-db-r1")
    assert created.operation_type == "CREATE" and created.status == "PENDING"
    clock.now += 400
    assert sqladmin.get_operation(P, created.name).done
    restored = sqladmin.start_restore(P, "orders-db-r1", str(FIRST_RUN_ID + 3), "orders-db")
    body = emu.router.calls.list("sql.instances.restoreBackup")[-1].body
    assert body["restoreBackupContext"] == {
        "backupRunId": str(FIRST_RUN_ID + 3),
        "instanceId": "orders-db",
        "project": P,
    }
    clock.now += 700
    done = sqladmin.get_operation(P, restored.name)
    assert done.done and not done.error and done.operation_type == "RESTORE_VOLUME"


# -- Secret Manager --------------------------------------------------------------------------


def test_secret_versions_through_the_client(emu: Emulator) -> None:
    client = sm.SecretManagerServiceClient(**options(emu))
    name = f"projects/{P}/secrets/orders-url"
    latest = client.access_secret_version(request={"name": f"{name}/versions/latest"})
    assert latest.name == f"{name}/versions/1" and PASSWORD in latest.payload.data.decode()
    added = client.add_secret_version(request={"parent": name, "payload": {"data": b"v2"}})
    assert added.name == f"{name}/versions/2" and added.state == sm.SecretVersion.State.ENABLED
    listed = [v.name for v in client.list_secret_versions(request={"parent": name})]
    assert listed == [f"{name}/versions/2", f"{name}/versions/1"]
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(request={"name": f"{name}/versions/9"})
    with pytest.raises(exceptions.BadRequest, match="Checksum"):
        client.add_secret_version(
            request={"parent": name, "payload": {"data": b"x", "data_crc32c": 1}}
        )
    created = client.create_secret(
        request={
            "parent": f"projects/{P}",
            "secret_id": "fresh",
            "secret": {"replication": {"automatic": {}}},
        }
    )
    assert created.name == f"projects/{P}/secrets/fresh"
    with pytest.raises(exceptions.Conflict):
        client.create_secret(
            request={
                "parent": f"projects/{P}",
                "secret_id": "fresh",
                "secret": {"replication": {"automatic": {}}},
            }
        )


def test_the_secrets_adapter_never_logs_the_value(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = secrets(emu)
    value = store.access(P, "orders-url", "1")
    assert PASSWORD in value
    assert store.version_of(P, "orders-url", "latest") == "1"
    assert store.add_version(P, "orders-url", value.replace("10.20.0.3", "10.20.0.9")) == "2"
    sent = emu.router.calls.list("secretmanager.versions.add")[-1].body
    assert sent["payload"]["dataCrc32c"], "the checksum travels with the data"
    store.create_secret(P, "orders-url-copy")
    with pytest.raises(SecretsError) as raised:
        store.create_secret(P, "orders-url-copy")
    assert raised.value.reason == "already_exists"
    emu.router.faults.add(Fault("secretmanager.versions.access", 403))
    with pytest.raises(SecretsError) as denied:
        store.access(P, "orders-url", "1")
    assert denied.value.reason == "permission_denied" and PASSWORD not in str(denied.value)
    assert PASSWORD not in caplog.text


def test_the_cloud_run_env_deploy_swaps_the_secret_and_the_cloud_sql_volume(
    emu: Emulator,
) -> None:
    """A read-modify-write: the ingress container's DATABASE_URL reference and the Cloud SQL
    volume change, the rest of the template is kept."""
    from google.cloud import run_v2

    emu.cloudrun.seed_service(
        P,
        "us-central1",
        "orders",
        [
            {
                "name": "orders-00001",
                "image": "us-docker.pkg.dev/proj/apps/orders:1",
                "env": {"MODE": "prod", "DATABASE_URL": {"secret": "orders-url", "version": "1"}},
            }
        ],
    )
    services = run_v2.ServicesClient(**options(emu))
    full = f"projects/{P}/locations/us-central1/services/orders"
    current = services.get_service(name=full)
    volume = run_v2.Volume(
        name="cloudsql",
        cloud_sql_instance=run_v2.CloudSqlInstance(instances=[f"{P}:us-central1:orders-db"]),
    )
    template = run_v2.RevisionTemplate(current.template)
    template.volumes = [volume]
    services.update_service(
        service=run_v2.Service(name=full, template=template),
        update_mask={"paths": ["template.volumes"]},
    )
    # Cloud Run reads the revision's secret as its service account (run_secrets.py)
    secret = emu.secrets.seed_secret(P, "orders-url", "postgresql://old", "postgresql://new")
    emu.secrets.grant(secret, ACCESSOR, f"serviceAccount:{DEFAULT_SERVICE_ACCOUNT}")
    run = CloudRunAdmin(emu.host, retry_deadline_s=1.5, initial_backoff_s=0.02)
    ref = ServiceRef(P, "us-central1", "orders")
    state = run.get_service(ref)
    with_volume = run.list_revisions(ref)[0].name  # the template change made a new revision
    op = run.start_env_update(
        ref,
        with_volume,
        EnvVar("DATABASE_URL", secret="orders-url", secret_version="2"),
        "orders-00002-db",
        [TrafficTarget("orders-00001", 100), TrafficTarget("orders-00002-db", 0, "restored")],
        state.etag,
        cloudsql_swap=(f"{P}:us-central1:orders-db", f"{P}:us-central1:orders-db-r1"),
    )
    run.wait_operation(op, 10)
    revision = run.get_revision(ref, "orders-00002-db")
    assert revision.env == (
        EnvVar("MODE", "prod"),
        EnvVar("DATABASE_URL", secret="orders-url", secret_version="2"),
    )
    patched = emu.router.calls.list("run.services.patch")[-1]
    assert "template" in patched.query["updateMask"][0].split(",")  # the whole template
    volumes = json.dumps(patched.body["template"]["volumes"])
    assert "orders-db-r1" in volumes and 'orders-db"' not in volumes
