"""Cloud SQL Admin API emulator (REST, ``sql/v1beta4`` and the same resources under ``v1``).

It speaks the REST dialect of the ``google-cloud-sql`` client (``sqladmin_v1beta4``, the
version of the library that ships a REST transport): every payload is built from, and parsed
into, the library's own message types. State lives in ``DatabaseInstance`` and ``BackupRun``
messages.

Semantics worth knowing (https://cloud.google.com/sql/docs/mysql/admin-api/rest):

- Every change (``instances.insert``, ``instances.restoreBackup``, ``backupRuns.insert``)
  answers at once with a ``sql#operation`` whose ``status`` goes PENDING -> RUNNING -> DONE in
  emulator time (``clock``): ``durations`` (seconds per operation type) say how long each
  takes, the first ``PENDING_S`` of them PENDING. A failed one is DONE with ``error.errors``.
- An instance runs one operation at a time: another change while one runs is a 409
  ("another operation was already in progress"), as on Cloud SQL.
- ``instances.insert`` creates the instance in state PENDING_CREATE; it is RUNNABLE when its
  CREATE operation is done. Its connection name is ``project:region:name``.
- ``instances.restoreBackup`` restores into the instance named in the URL, which must exist:
  restoring "to a different instance" overwrites an existing target, which must have the
  same database version as the backup's instance
  (https://cloud.google.com/sql/docs/postgres/backup-recovery/restore, "Tips and requirements
  for restoring to a different instance";
  https://cloud.google.com/sql/docs/mysql/admin-api/rest/v1beta4/instances/restoreBackup).
  ``restoreBackupContext.instanceId`` names the backup's instance (default: the target). Only
  a SUCCESSFUL backup run can be restored. The target is in MAINTENANCE until it is done.
- ``backupRuns.insert`` starts an ON_DEMAND backup (type is ignored on insert); the run is
  ENQUEUED, RUNNING, then SUCCESSFUL (or FAILED) with its operation; ``backupContext.backupId``
  of the operation names it. ``backupRuns.list`` is newest first, paged by ``maxResults``.
- ``instances.insert`` keeps the body's ``settings`` (flags, network, disk, backups...). An
  omitted ``settings.edition`` is Enterprise Plus for PostgreSQL 16 and later, Enterprise
  before (https://cloud.google.com/sql/docs/postgres/create-instance: "If the database version
  for your instance is PostgreSQL 16 or later, the default edition is Cloud SQL Enterprise
  Plus"); Enterprise Plus takes only ``db-perf-optimized-N-*`` tiers and refuses others with
  Cloud SQL's own 400 ("Invalid Tier (db-custom-2-7680) for (ENTERPRISE_PLUS) Edition ...",
  GoogleCloudPlatform/magic-modules#18014), and ``db-perf-optimized`` tiers need it.
- An instance's IPs follow its ``ipConfiguration``: a PRIVATE address when it names a
  ``privateNetwork``, a PRIMARY (public) one unless ``ipv4Enabled`` is false (public IP is on
  by default).
- ``fail_next_operations`` makes the next operations of a type end with an error.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.cloud import sqladmin_v1beta4 as sql

from bot.sandbox.emulator.cloudrun_model import _json_object, _message_response
from bot.sandbox.emulator.http import HttpError, Request, Response, Router, json_response

Instance = sql.DatabaseInstance
State = sql.DatabaseInstance.SqlInstanceState
OpStatus = sql.Operation.SqlOperationStatus
OpType = sql.Operation.SqlOperationType
RunStatus = sql.SqlBackupRunStatus
RunType = sql.SqlBackupRunType
Edition = sql.Settings.Edition

FIRST_RUN_ID = 1_700_000_000_000  # backup run ids look like Cloud SQL's (epoch milliseconds)
PENDING_S = 2.0  # an operation is PENDING this long (emulator seconds) before RUNNING
DEFAULT_DURATIONS = {"CREATE": 300.0, "RESTORE_VOLUME": 600.0, "BACKUP_VOLUME": 120.0}
DEFAULT_PAGE_SIZE = 100
PREFIX = r"/(?:sql/v1beta4|v1)/projects/(?P<project>[^/]+)"
INSTANCE = PREFIX + r"/instances/(?P<instance>[^/]+)"


class InProgress(HttpError):
    def __init__(self) -> None:
        super().__init__(409, "Operation failed because another operation was already in progress.")


@dataclass
class _Op:
    message: sql.Operation
    starts_at: float  # emulator clock seconds
    done_at: float
    error: str = ""
    then: Callable[[bool], None] | None = None  # applied once, when done (ok?)
    on_running: Callable[[], None] | None = None  # applied once, when it starts running
    settled: bool = False


@dataclass
class _World:
    instances: dict[tuple[str, str], sql.DatabaseInstance] = field(default_factory=dict)
    runs: dict[tuple[str, str], list[sql.BackupRun]] = field(default_factory=dict)
    operations: dict[str, _Op] = field(default_factory=dict)
    busy: dict[tuple[str, str], str] = field(default_factory=dict)  # instance -> operation


class SqlAdminEmulator:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self.reset()

    # -- Python API ---------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._world = _World()
            self.durations = dict(DEFAULT_DURATIONS)
            self._failures: dict[str, list[str]] = {}
            self._next_run_id = FIRST_RUN_ID  # deterministic ids, so scripts can name them

    def seed_instance(
        self,
        project: str,
        name: str,
        region: str = "us-central1",
        database_version: str = "POSTGRES_15",
        tier: str = "db-custom-2-7680",
        ip: str = "10.20.0.3",
        backups: list[dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A RUNNABLE instance with backup runs ``{"age_s", "type", "status", "description"}``
        (default: automated daily backups of the last three days, all SUCCESSFUL). ``settings``
        (REST JSON, camelCase) replace the defaults: Enterprise edition, private IP only,
        zonal, daily backups at 03:00."""
        with self._lock:
            merged = _default_settings(project, tier)
            if settings:
                given = sql.Settings.from_json(json.dumps(settings))
                sql.Settings.pb(merged).MergeFrom(sql.Settings.pb(given))
            instance = _instance(project, name, region, database_version, merged, ip, self.clock())
            instance.state = State.RUNNABLE
            self._world.instances[(project, name)] = instance
            self._world.runs[(project, name)] = []
            specs = backups if backups is not None else _daily(3)
            for spec in sorted(specs, key=lambda s: -float(s.get("age_s", 0))):
                self._seed_run(project, name, spec)
            return self.instance(project, name)

    def instance(self, project: str, name: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            found = self._require(project, name)
            return {
                "name": found.name,
                "state": State(found.state).name,
                "connection_name": found.connection_name,
                "database_version": sql.SqlDatabaseVersion(found.database_version).name,
                "settings": json.loads(
                    sql.Settings.to_json(found.settings, use_integers_for_enums=False)
                ),
                "ip_addresses": [
                    (sql.SqlIpAddressType(ip.type_).name, ip.ip_address)
                    for ip in found.ip_addresses
                ],
            }

    def instances(self) -> list[str]:
        with self._lock:
            return sorted(name for _, name in self._world.instances)

    def backup_runs(self, project: str, name: str) -> list[dict[str, Any]]:
        """The instance's backup runs, newest first, as plain data."""
        with self._lock:
            self._settle()
            return [
                {
                    "id": str(run.id),
                    "type": RunType(run.type_).name,
                    "status": RunStatus(run.status).name,
                    "description": run.description,
                }
                for run in reversed(self._world.runs.get((project, name), []))
            ]

    def fail_next_operations(self, operation_type: str, message: str, times: int = 1) -> None:
        """The next ``times`` operations of ``operation_type`` (CREATE, RESTORE_VOLUME,
        BACKUP_VOLUME) end DONE with an error ``message``."""
        if operation_type not in OpType.__members__:
            raise ValueError(f"unknown operation type {operation_type!r}")
        with self._lock:
            self._failures.setdefault(operation_type, []).extend([message] * max(0, times))

    def set_durations(self, **seconds: float) -> dict[str, float]:
        with self._lock:
            for kind, value in seconds.items():
                if kind not in OpType.__members__ or float(value) < 0:
                    raise ValueError(f"bad duration {kind}={value!r}")
                self.durations[kind] = float(value)
            return dict(self.durations)

    def settle(self) -> None:
        with self._lock:
            self._settle()

    # -- routes -------------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        add = router.add
        add("GET", INSTANCE, "sql.instances.get", self._get_instance)
        add("GET", PREFIX + "/instances", "sql.instances.list", self._list_instances)
        add("POST", PREFIX + "/instances", "sql.instances.insert", self._insert_instance)
        add("POST", INSTANCE + "/restoreBackup", "sql.instances.restoreBackup", self._restore)
        add("GET", INSTANCE + "/backupRuns", "sql.backupRuns.list", self._list_runs)
        add("POST", INSTANCE + "/backupRuns", "sql.backupRuns.insert", self._insert_run)
        add("GET", INSTANCE + r"/backupRuns/(?P<id>[0-9]+)", "sql.backupRuns.get", self._get_run)
        add("GET", PREFIX + r"/operations/(?P<op>[^/]+)", "sql.operations.get", self._get_op)
        add("GET", PREFIX + "/operations", "sql.operations.list", self._list_ops)
        add("POST", "/_emulator/sql/instances", "_emulator.sql.seed", self._control_seed)
        add("POST", "/_emulator/sql/config", "_emulator.sql.config", self._control_config)
        add("POST", "/_emulator/sql/operations/fail", "_emulator.sql.fail", self._control_fail)

    # -- Admin API handlers -------------------------------------------------------------------

    def _get_instance(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            found = self._require(request.params["project"], request.params["instance"])
            return _message_response(self._render(found, request), request)

    def _list_instances(self, request: Request) -> Response:
        project = request.params["project"]
        with self._lock:
            self._settle()
            items = [
                self._render(instance, request)
                for (p, _), instance in sorted(self._world.instances.items())
                if p == project
            ]
            return _message_response(sql.InstancesListResponse(items=items), request)

    def _insert_instance(self, request: Request) -> Response:
        project = request.params["project"]
        body = _parse(sql.DatabaseInstance, request)
        if not body.name:
            raise HttpError(400, "Missing parameter: name.")
        if not body.region:
            raise HttpError(400, "Missing parameter: region.")
        if not body.settings.tier:
            raise HttpError(400, "Missing parameter: settings.tier.")
        settings = sql.Settings(body.settings)
        if settings.edition == Edition.EDITION_UNSPECIFIED:
            settings.edition = _default_edition(body.database_version)
        _check_tier(settings)
        if "ip_configuration" not in settings:
            settings.ip_configuration = sql.IpConfiguration()
        with self._lock:
            self._settle()
            if (project, body.name) in self._world.instances:
                raise HttpError(409, "The Cloud SQL instance already exists.")
            version = sql.SqlDatabaseVersion(body.database_version).name
            ip = f"{len(self._world.instances) % 250}.{uuid.uuid4().int % 250 + 2}"
            instance = _instance(
                project, body.name, body.region, version, settings, ip, self.clock()
            )
            instance.state = State.PENDING_CREATE
            self._world.instances[(project, body.name)] = instance
            self._world.runs[(project, body.name)] = []

            def created(ok: bool) -> None:
                instance.state = State.RUNNABLE if ok else State.FAILED

            op = self._start(project, body.name, "CREATE", created)
            return _message_response(op, request)

    def _restore(self, request: Request) -> Response:
        project, target = request.params["project"], request.params["instance"]
        body = _parse(sql.InstancesRestoreBackupRequest, request)
        context = body.restore_backup_context
        if not context.backup_run_id:
            raise HttpError(400, "restoreBackupContext.backupRunId is required.")
        with self._lock:
            self._settle()
            instance = self._require(project, target)
            source_project = context.project or project
            source = context.instance_id or target
            run = self._find_run(source_project, source, str(context.backup_run_id))
            if run is None:
                raise HttpError(404, f"The backup run {context.backup_run_id} does not exist.")
            if run.status != RunStatus.SUCCESSFUL:
                raise HttpError(400, f"The backup run {run.id} is not SUCCESSFUL.")
            if run.database_version != instance.database_version:
                raise HttpError(
                    400,
                    "The target instance must have the same database version as the "
                    "instance from which the backup was taken.",
                )
            if (project, target) in self._world.busy:
                raise InProgress()
            instance.state = State.MAINTENANCE

            def restored(ok: bool) -> None:
                instance.state = State.RUNNABLE

            op = self._start(project, target, "RESTORE_VOLUME", restored)
            return _message_response(op, request)

    def _list_runs(self, request: Request) -> Response:
        project, name = request.params["project"], request.params["instance"]
        with self._lock:
            self._settle()
            self._require(project, name)
            runs = list(reversed(self._world.runs[(project, name)]))
            try:
                start = int(request.arg("pageToken") or 0)
                size = int(request.arg("maxResults") or 0) or DEFAULT_PAGE_SIZE
            except ValueError as error:
                raise HttpError(400, "invalid pageToken or maxResults") from error
            page = runs[start : start + size]
            token = str(start + size) if start + size < len(runs) else ""
            body = sql.BackupRunsListResponse(
                kind="sql#backupRunsList", items=page, next_page_token=token
            )
            return _message_response(body, request)

    def _get_run(self, request: Request) -> Response:
        project, name = request.params["project"], request.params["instance"]
        with self._lock:
            self._settle()
            self._require(project, name)
            run = self._find_run(project, name, request.params["id"])
            if run is None:
                raise HttpError(404, f"The backup run {request.params['id']} does not exist.")
            return _message_response(run, request)

    def _insert_run(self, request: Request) -> Response:
        project, name = request.params["project"], request.params["instance"]
        body = _parse(sql.BackupRun, request)
        with self._lock:
            self._settle()
            instance = self._require(project, name)
            if instance.state != State.RUNNABLE:
                raise HttpError(400, f"Invalid request since instance is not running: {name}.")
            if (project, name) in self._world.busy:
                raise InProgress()
            run = self._new_run(project, instance, RunType.ON_DEMAND, body.description)
            run.status = RunStatus.ENQUEUED

            def finished(ok: bool) -> None:
                run.status = RunStatus.SUCCESSFUL if ok else RunStatus.FAILED
                run.end_time = _at(self.clock())
                if not ok:
                    run.error = sql.OperationError(
                        kind="sql#operationError", code="BACKUP_FAILED", message="backup failed"
                    )

            op = self._start(project, name, "BACKUP_VOLUME", finished, run=run)
            return _message_response(op, request)

    def _get_op(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            found = self._world.operations.get(request.params["op"])
            if found is None or found.message.target_project != request.params["project"]:
                raise HttpError(404, f"The operation {request.params['op']} does not exist.")
            return _message_response(found.message, request)

    def _list_ops(self, request: Request) -> Response:
        """The instance's operations, newest start first, paged by ``maxResults``
        (https://cloud.google.com/sql/docs/admin-api/v1beta4/operations/list)."""
        project, name = request.params["project"], request.arg("instance")
        with self._lock:
            self._settle()
            self._require(project, name)
            ops = [
                op.message
                for op in self._world.operations.values()
                if op.message.target_project == project and op.message.target_id == name
            ]
            ops.sort(key=lambda message: message.insert_time, reverse=True)
            try:
                start = int(request.arg("pageToken") or 0)
                size = int(request.arg("maxResults") or 0) or DEFAULT_PAGE_SIZE
            except ValueError as error:
                raise HttpError(400, "invalid pageToken or maxResults") from error
            token = str(start + size) if start + size < len(ops) else ""
            body = sql.OperationsListResponse(
                kind="sql#operationsList", items=ops[start : start + size], next_page_token=token
            )
            return _message_response(body, request)

    # -- control API --------------------------------------------------------------------------

    def _control_seed(self, request: Request) -> Response:
        body = _json_object(request)
        try:
            return json_response(
                self.seed_instance(
                    str(body["project"]),
                    str(body["name"]),
                    region=str(body.get("region", "us-central1")),
                    database_version=str(body.get("database_version", "POSTGRES_15")),
                    backups=body.get("backups"),
                )
            )
        except KeyError as error:
            raise HttpError(400, f"missing field {error}") from error
        except (TypeError, ValueError) as error:
            raise HttpError(400, str(error)) from error

    def _control_config(self, request: Request) -> Response:
        """``{"durations": {"RESTORE_VOLUME": 900, ...}}`` in emulator seconds."""
        body = _json_object(request)
        try:
            return json_response({"durations": self.set_durations(**(body.get("durations") or {}))})
        except (TypeError, ValueError) as error:
            raise HttpError(400, str(error)) from error

    def _control_fail(self, request: Request) -> Response:
        """``{"type": "RESTORE_VOLUME", "message": "...", "times": 1}``."""
        body = _json_object(request)
        try:
            self.fail_next_operations(
                str(body["type"]),
                str(body.get("message", "injected failure")),
                int(body.get("times", 1)),
            )
        except KeyError as error:
            raise HttpError(400, "missing field 'type'") from error
        except (TypeError, ValueError) as error:
            raise HttpError(400, str(error)) from error
        return json_response({"ok": True})

    # -- machinery ----------------------------------------------------------------------------

    def _start(
        self,
        project: str,
        instance: str,
        kind: str,
        then: Callable[[bool], None],
        run: sql.BackupRun | None = None,
    ) -> sql.Operation:
        now = self.clock()
        name = str(uuid.uuid4())
        failures = self._failures.get(kind) or []
        error = failures.pop(0) if failures else ""
        message = sql.Operation(
            kind="sql#operation",
            name=name,
            operation_type=OpType[kind],
            status=OpStatus.PENDING,
            user="runback@runback-sandbox.iam.gserviceaccount.com",
            insert_time=_at(now),
            target_id=instance,
            target_project=project,
            target_link=f"https://sqladmin.googleapis.com/sql/v1beta4/projects/{project}/instances/{instance}",
            self_link=f"https://sqladmin.googleapis.com/sql/v1beta4/projects/{project}/operations/{name}",
        )
        if run is not None:  # a backup's operation names its run
            message.backup_context = sql.BackupContext(kind="sql#backupContext", backup_id=run.id)
        duration = self.durations.get(kind, 60.0)
        op = _Op(message, now + min(PENDING_S, duration), now + duration, error, then)
        if run is not None:
            self._world.runs[(project, instance)].append(run)
            op.on_running = lambda: _run_started(run, self.clock())
        self._world.operations[name] = op
        self._world.busy[(project, instance)] = name
        self._settle()
        return sql.Operation(message)

    def _settle(self) -> None:
        """Move every operation along to where the clock says it is (lazy, on each read)."""
        now = self.clock()
        for op in self._world.operations.values():
            if op.settled:
                continue
            message = op.message
            if now >= op.starts_at and message.status == OpStatus.PENDING:
                message.status = OpStatus.RUNNING
                message.start_time = _at(op.starts_at)
                if op.on_running is not None:
                    op.on_running()
            if now >= op.done_at:
                message.status = OpStatus.DONE
                message.end_time = _at(op.done_at)
                if op.error:
                    message.error = sql.OperationErrors(
                        kind="sql#operationErrors",
                        errors=[
                            sql.OperationError(
                                kind="sql#operationError", code="INTERNAL_ERROR", message=op.error
                            )
                        ],
                    )
                op.settled = True
                key = (message.target_project, message.target_id)
                if self._world.busy.get(key) == message.name:
                    del self._world.busy[key]
                if op.then is not None:
                    op.then(not op.error)

    def _seed_run(self, project: str, name: str, spec: dict[str, Any]) -> None:
        instance = self._world.instances[(project, name)]
        kind = RunType[str(spec.get("type", "AUTOMATED"))]
        run = self._new_run(project, instance, kind, str(spec.get("description", "")))
        started = self.clock() - float(spec.get("age_s", 0))
        run.enqueued_time = _at(started)
        run.start_time = _at(started)
        run.end_time = _at(started + 90)
        run.window_start_time = _at(started)
        run.status = RunStatus[str(spec.get("status", "SUCCESSFUL"))]
        self._world.runs[(project, name)].append(run)

    def _new_run(
        self, project: str, instance: sql.DatabaseInstance, kind: RunType, description: str
    ) -> sql.BackupRun:
        self._next_run_id += 1
        run_id = self._next_run_id
        now = self.clock()
        return sql.BackupRun(
            kind="sql#backupRun",
            id=run_id,
            instance=instance.name,
            type_=kind,
            description=description,
            enqueued_time=_at(now),
            window_start_time=_at(now),
            location=instance.region,
            database_version=instance.database_version,
            backup_kind=sql.SqlBackupKind.SNAPSHOT,
            self_link=(
                "https://sqladmin.googleapis.com/sql/v1beta4/projects/"
                f"{project}/instances/{instance.name}/backupRuns/{run_id}"
            ),
        )

    def _find_run(self, project: str, name: str, run_id: str) -> sql.BackupRun | None:
        runs = self._world.runs.get((project, name), [])
        return next((run for run in runs if str(run.id) == run_id), None)

    def _require(self, project: str, name: str) -> sql.DatabaseInstance:
        found = self._world.instances.get((project, name))
        if found is None:
            raise HttpError(404, f"The Cloud SQL instance does not exist: {name}.")
        return found

    def _render(self, instance: sql.DatabaseInstance, request: Request) -> sql.DatabaseInstance:
        copy = sql.DatabaseInstance(instance)
        prefix = "v1" if request.path.startswith("/v1/") else "sql/v1beta4"
        copy.self_link = (
            f"https://sqladmin.googleapis.com/{prefix}/projects/{instance.project}"
            f"/instances/{instance.name}"
        )
        return copy


def _run_started(run: sql.BackupRun, now: float) -> None:
    run.status = RunStatus.RUNNING
    run.start_time = _at(now)


def _instance(
    project: str,
    name: str,
    region: str,
    version: str,
    settings: sql.Settings,
    ip: str,
    created: float,
) -> sql.DatabaseInstance:
    """``ip``: the address (or its last two numbers) the instance's private IP gets."""
    try:
        database_version = sql.SqlDatabaseVersion[version]
    except KeyError:
        raise HttpError(400, f"Invalid database version: {version}.") from None
    settings.kind = "sql#settings"
    if settings.availability_type == sql.SqlAvailabilityType.SQL_AVAILABILITY_TYPE_UNSPECIFIED:
        settings.availability_type = sql.SqlAvailabilityType.ZONAL
    return sql.DatabaseInstance(
        kind="sql#instance",
        name=name,
        project=project,
        region=region,
        gce_zone=f"{region}-a",
        database_version=database_version,
        backend_type=sql.SqlBackendType.SECOND_GEN,
        instance_type=sql.SqlInstanceType.CLOUD_SQL_INSTANCE,
        connection_name=f"{project}:{region}:{name}",
        ip_addresses=_addresses(settings.ip_configuration, ip),
        settings=settings,
        create_time=datetime.fromtimestamp(created, UTC),
        etag=uuid.uuid4().hex,
    )


def _addresses(config: sql.IpConfiguration, ip: str) -> list[sql.IpMapping]:
    """PRIVATE when the instance is on a VPC network, PRIMARY unless public IP is off."""
    private = ip if ip.count(".") == 3 else f"10.20.{ip}"
    found = []
    if config.private_network:
        found.append(sql.IpMapping(type_=sql.SqlIpAddressType.PRIVATE, ip_address=private))
    if "ipv4_enabled" not in config or config.ipv4_enabled:
        public = "34.118." + ".".join(private.split(".")[2:])
        found.append(sql.IpMapping(type_=sql.SqlIpAddressType.PRIMARY, ip_address=public))
    return found


def _default_settings(project: str, tier: str) -> sql.Settings:
    return sql.Settings(
        tier=tier,
        edition=Edition.ENTERPRISE,
        availability_type=sql.SqlAvailabilityType.ZONAL,
        data_disk_type=sql.SqlDataDiskType.PD_SSD,
        data_disk_size_gb=10,
        ip_configuration=sql.IpConfiguration(
            ipv4_enabled=False,
            private_network=f"projects/{project}/global/networks/default",
            ssl_mode=sql.IpConfiguration.SslMode.ENCRYPTED_ONLY,
        ),
        backup_configuration=sql.BackupConfiguration(
            kind="sql#backupConfiguration", enabled=True, start_time="03:00"
        ),
    )


def _default_edition(version: int) -> Any:
    name = sql.SqlDatabaseVersion(version).name
    major = name.removeprefix("POSTGRES_")
    if major.isdigit() and int(major) >= 16:
        return Edition.ENTERPRISE_PLUS
    return Edition.ENTERPRISE


def _check_tier(settings: sql.Settings) -> None:
    performance = settings.tier.startswith("db-perf-optimized-")
    if settings.edition == Edition.ENTERPRISE_PLUS and not performance:
        raise HttpError(
            400,
            f"Invalid request: Invalid Tier ({settings.tier}) for (ENTERPRISE_PLUS) Edition. "
            "Use a predefined Tier like db-perf-optimized-N-* instead.",
        )
    if settings.edition == Edition.ENTERPRISE and performance:
        raise HttpError(
            400, f"Invalid request: Invalid Tier ({settings.tier}) for (ENTERPRISE) Edition."
        )


def _daily(days: int) -> list[dict[str, Any]]:
    return [{"age_s": 6 * 3600 + d * 86400, "type": "AUTOMATED"} for d in range(days)]


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _parse(kind: Any, request: Request) -> Any:
    """The body as ``kind``, strictly: a field the API does not have is a 400."""
    try:
        return kind.from_json(request.body or b"{}", ignore_unknown_fields=False)
    except Exception as error:  # json_format.ParseError, ValueError
        raise HttpError(400, f"Invalid JSON payload received. {error}") from error
