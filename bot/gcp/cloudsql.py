"""The CloudSql port over the Cloud SQL Admin API (``google-cloud-sql``, REST transport).

``google-cloud-sql`` ships REST transports for ``sqladmin_v1beta4`` only (its ``sqladmin_v1``
speaks gRPC alone); v1beta4 is the version ``gcloud sql`` uses and serves the same resources
(https://cloud.google.com/sql/docs/mysql/admin-api/rest). Google libraries are imported on
first use, never at module import (cold start).

Calls are retried on transient failures for at most ``retry_deadline_s`` (see bot/gcp/retrying),
then raise CloudSqlError("unavailable"). Creating calls (insert, restore, backup) are retried
only when Google said it did not act (503, 429).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.gcp.retrying import (
    RetryingAdapter,
    call_google,
    emulator_options,
    transient_retry,
)
from bot.ports import Backup, CloudSqlError, SqlInstance, SqlOperation

if TYPE_CHECKING:
    from google.cloud import sqladmin_v1beta4


class CloudSqlAdmin(RetryingAdapter):
    """CloudSql (bot.ports) backed by sqladmin_v1beta4's REST clients."""

    def __init__(self, emulator_host: str | None, **retry_budget: float) -> None:
        super().__init__(emulator_host, **retry_budget)
        self._clients: dict[str, Any] | None = None

    # -- the CloudSql port --------------------------------------------------------------------

    def get_instance(self, project: str, instance: str) -> SqlInstance:
        found = self._run(
            "instances", lambda c, o: c.get(request={"project": project, "instance": instance}, **o)
        )
        return to_instance(found)

    def list_instances(self, project: str) -> list[SqlInstance]:
        def every(client: Any, options: dict[str, Any]) -> list[Any]:
            # The generated pager of instances.list iterates the responses' ``warnings``, not
            # their ``items``: read the pages.
            pager = client.list(request={"project": project}, **options)
            return [found for page in pager.pages for found in page.items]

        return [to_instance(found) for found in self._run("instances", every)]

    def list_backups(self, project: str, instance: str, limit: int) -> list[Backup]:
        def page(client: Any, options: dict[str, Any]) -> list[Any]:
            request = {"project": project, "instance": instance, "max_results": limit}
            runs = []
            for run in client.list(request=request, **options):
                runs.append(run)
                if len(runs) >= limit:
                    break
            return runs

        return [to_backup(run) for run in self._run("backup_runs", page)]

    def start_backup(self, project: str, instance: str, description: str) -> SqlOperation:
        from google.cloud import sqladmin_v1beta4 as sql

        body = sql.BackupRun(description=description)
        request = {"project": project, "instance": instance, "body": body}
        operation = self._run(
            "backup_runs", lambda c, o: c.insert(request=request, **o), creates=True
        )
        return to_operation(operation)

    def start_create_instance(self, like: SqlInstance, name: str) -> SqlOperation:
        from google.cloud import sqladmin_v1beta4 as sql

        # Every copied setting, the edition first: without it Cloud SQL picks Enterprise Plus
        # for PostgreSQL 16+, which refuses db-custom-* tiers; flags are not in a backup.
        settings = sql.Settings.from_json(json.dumps(dict(like.settings)))
        settings.tier = like.tier
        body = sql.DatabaseInstance(
            name=name,
            region=like.region,
            database_version=sql.SqlDatabaseVersion.__members__[like.database_version],
            settings=settings,
        )
        request = {"project": like.project, "body": body}
        operation = self._run(
            "instances", lambda c, o: c.insert(request=request, **o), creates=True
        )
        return to_operation(operation)

    def start_restore(self, project: str, target: str, backup_id: str, source: str) -> SqlOperation:
        from google.cloud import sqladmin_v1beta4 as sql

        # restoreBackupContext: the backup run's id and the instance it belongs to
        # (https://cloud.google.com/sql/docs/mysql/admin-api/rest/v1beta4/instances/restoreBackup)
        context = sql.RestoreBackupContext(
            backup_run_id=int(backup_id), instance_id=source, project=project
        )
        body = sql.InstancesRestoreBackupRequest(restore_backup_context=context)
        request = {"project": project, "instance": target, "body": body}
        operation = self._run(
            "instances", lambda c, o: c.restore_backup(request=request, **o), creates=True
        )
        return to_operation(operation)

    def recent_operations(self, project: str, instance: str, limit: int = 20) -> list[SqlOperation]:
        def page(client: Any, options: dict[str, Any]) -> list[Any]:
            request = {"project": project, "instance": instance, "max_results": limit}
            found = []
            for operation in client.list(request=request, **options):
                found.append(operation)
                if len(found) >= limit:
                    break
            return found

        return [to_operation(op) for op in self._run("operations", page)]

    def get_operation(self, project: str, name: str) -> SqlOperation:
        request = {"project": project, "operation": name}
        return to_operation(self._run("operations", lambda c, o: c.get(request=request, **o)))

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._clients is not None

    def warm_up(self) -> None:
        self._get_clients()

    def _run(self, client: str, fn: Any, creates: bool = False) -> Any:
        clients = self._get_clients()
        options = {
            "retry": transient_retry(self._initial_s, self._deadline_s, creates=creates),
            "timeout": self._timeout_s,
        }
        return call_google(lambda: fn(clients[client], options), CloudSqlError)

    def _get_clients(self) -> dict[str, Any]:
        with self._lock:
            if self._clients is None:
                from google.cloud import sqladmin_v1beta4 as sql

                options = emulator_options(self._emulator_host)
                self._clients = {
                    "instances": sql.SqlInstancesServiceClient(**options),
                    "backup_runs": sql.SqlBackupRunsServiceClient(**options),
                    "operations": sql.SqlOperationsServiceClient(**options),
                }
            return self._clients


# -- conversions (pure, no I/O) ---------------------------------------------------------------


def to_instance(instance: sqladmin_v1beta4.DatabaseInstance) -> SqlInstance:
    from google.cloud import sqladmin_v1beta4 as sql

    return SqlInstance(
        project=instance.project,
        name=instance.name,
        state=sql.DatabaseInstance.SqlInstanceState(instance.state).name,
        database_version=sql.SqlDatabaseVersion(instance.database_version).name,
        region=instance.region,
        tier=instance.settings.tier,
        connection_name=instance.connection_name,
        ip_addresses=tuple(ip.ip_address for ip in instance.ip_addresses),
        settings=copied_settings(instance.settings),
    )


# The settings a restore's clone takes from its original: what the service needs to reach it
# and what keeps it as safe as the original (https://cloud.google.com/sql/docs/postgres/
# backup-recovery/restore: a restore to another instance does not change its settings, and
# database flags are not restored).
COPIED_SETTINGS = (
    "edition",
    "tier",
    "ipConfiguration",
    "databaseFlags",
    "availabilityType",
    "dataDiskType",
    "dataDiskSizeGb",
    "storageAutoResize",
    "storageAutoResizeLimit",
    "backupConfiguration",
    "deletionProtectionEnabled",
    "locationPreference",
    "maintenanceWindow",
    "connectorEnforcement",
    "passwordValidationPolicy",
    "insightsConfig",
    "dataCacheConfig",
    "timeZone",
    "collation",
    "userLabels",
)
OUTPUT_ONLY = {"backupConfiguration": ("transactionalLogStorageState", "backupTier")}


def copied_settings(settings: sqladmin_v1beta4.Settings) -> dict[str, Any]:
    from google.cloud import sqladmin_v1beta4 as sql

    found = json.loads(sql.Settings.to_json(settings, use_integers_for_enums=False))
    copied = {key: found[key] for key in COPIED_SETTINGS if key in found}
    for key, fields in OUTPUT_ONLY.items():
        if isinstance(copied.get(key), dict):
            copied[key] = {k: v for k, v in copied[key].items() if k not in fields}
    return copied


def to_backup(run: sqladmin_v1beta4.BackupRun) -> Backup:
    from google.cloud import sqladmin_v1beta4 as sql

    return Backup(
        id=str(run.id),
        automated=run.type_ == sql.SqlBackupRunType.AUTOMATED,
        status=sql.SqlBackupRunStatus(run.status).name,
        enqueued=_time(run, "enqueued_time"),
        started=_time(run, "start_time"),
        ended=_time(run, "end_time"),
        description=run.description,
        error=run.error.message if "error" in run else "",
    )


def to_operation(operation: sqladmin_v1beta4.Operation) -> SqlOperation:
    from google.cloud import sqladmin_v1beta4 as sql

    errors = [e.message or e.code for e in operation.error.errors] if "error" in operation else []
    backup = operation.backup_context.backup_id if "backup_context" in operation else 0
    return SqlOperation(
        name=operation.name,
        project=operation.target_project,
        status=sql.Operation.SqlOperationStatus(operation.status).name,
        operation_type=sql.Operation.SqlOperationType(operation.operation_type).name,
        error="; ".join(errors),
        backup_id=str(backup) if backup else "",
        started=_time(operation, "start_time"),
    )


def _time(message: Any, field: str) -> datetime | None:
    if field not in message:
        return None
    value = getattr(message, field)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
