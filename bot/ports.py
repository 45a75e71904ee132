"""The small Protocols the workflows speak through, and the plain data they exchange.

Workflows in ``bot.ops`` depend only on this module; ``bot.gcp`` and ``bot.slack`` hold the one
real implementation of each Protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Minute:
    """One visible minute of a revision: Cloud Run's point covering ``(end - 1 min, end]``."""

    end: datetime
    requests: int
    errors: int


@dataclass(frozen=True)
class ServiceRef:
    project: str
    region: str
    name: str

    @property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{self.name}"


@dataclass(frozen=True)
class EnvVar:
    """One environment variable of a revision's ingress container.

    A plain variable has ``value``; one read from Secret Manager (``valueSource.secretKeyRef``)
    has ``secret`` (the secret's name or full resource name) and ``secret_version`` instead.
    """

    name: str
    value: str = ""
    secret: str = ""
    secret_version: str = ""

    @property
    def from_secret(self) -> bool:
        return bool(self.secret)


@dataclass(frozen=True)
class Revision:
    name: str  # short name, e.g. "wa-backend-00002"
    image: str
    created: datetime
    ready: bool
    ready_message: str = ""  # the Ready condition's message when not ready (why, per Cloud Run)
    env: tuple[EnvVar, ...] = ()  # the ingress container's environment, in order
    service_account: str = ""  # the identity it runs as (what reads its secrets)

    def env_value(self, name: str) -> str | None:
        """The plain value of variable ``name``, or None when unset or read from a secret."""
        for var in self.env:
            if var.name == name and not var.from_secret:
                return var.value
        return None


@dataclass(frozen=True)
class TrafficTarget:
    """One entry of a service's traffic split, always pinned to a revision by name."""

    revision: str
    percent: int
    tag: str = ""


@dataclass(frozen=True)
class TrafficStatus:
    """What the service actually serves (``trafficStatuses``), with the tag URL when tagged."""

    revision: str
    percent: int
    tag: str = ""
    uri: str = ""
    latest: bool = False  # the target follows LATEST rather than a pinned revision


@dataclass(frozen=True)
class ServiceState:
    ref: ServiceRef
    etag: str
    uri: str
    traffic: tuple[TrafficStatus, ...]
    latest_ready_revision: str
    reconciling: bool = False
    # How the service's template runs its instances (Runback reads its own service at start):
    # the CPU only while requests are in flight (request-based billing), and min instances.
    cpu_throttled: bool = False
    min_instances: int = 0
    # Cloud Run's own reason when the last change failed: its terminalCondition FAILED (reason
    # and message) once reconciling ended; "" otherwise.
    failure: str = ""

    def serving(self) -> dict[str, int]:
        """Revision name -> percent of traffic it receives (zero-percent tags left out)."""
        shares: dict[str, int] = {}
        for status in self.traffic:
            if status.percent:
                shares[status.revision] = shares.get(status.revision, 0) + status.percent
        return shares


class CloudRunError(Exception):
    """A Cloud Run call failed after bounded retries; ``reason`` is a short machine code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class EtagConflict(CloudRunError):
    def __init__(self, detail: str = "") -> None:
        super().__init__("etag_conflict", detail)


class RevisionExists(CloudRunError):
    """A deploy named a revision that already exists (Cloud Run: 409 ALREADY_EXISTS)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("revision_exists", detail)


class CloudRun(Protocol):
    def get_service(self, ref: ServiceRef) -> ServiceState: ...

    def list_revisions(self, ref: ServiceRef) -> list[Revision]:
        """Every revision of the service, newest first."""
        ...

    def get_revision(self, ref: ServiceRef, name: str) -> Revision:
        """One revision of the service, read now (its Ready condition as Cloud Run reports it)."""
        ...

    def start_traffic_update(self, ref: ServiceRef, targets: list[TrafficTarget], etag: str) -> str:
        """PATCH the service's traffic (update mask ``traffic``); returns the operation name.

        Raises EtagConflict when ``etag`` is stale, CloudRunError on other failures.
        """
        ...

    def wait_operation(self, operation_name: str, timeout_s: float) -> ServiceState:
        """Wait for a long-running operation; raises CloudRunError if it failed."""
        ...

    def start_deploy(
        self,
        ref: ServiceRef,
        image: str,
        revision_name: str,
        targets: list[TrafficTarget],
        etag: str,
        env: Mapping[str, str] | None = None,
        base_revision: str = "",
    ) -> str:
        """Create revision ``revision_name`` running ``image`` and set ``targets``, in one PATCH.
        ``env`` sets plain environment variables of the ingress container (others are kept).
        ``base_revision``: take the containers (environment, resources, sidecars) from that
        revision (blue) rather than from the service's template, which after a rollback still
        holds what was rolled back from.

        The rest of the template (env vars, resources, ...) is kept. ``targets`` may name the
        new revision (e.g. at 0% with tag "green"). Returns the operation name. Raises
        EtagConflict when ``etag`` is stale, RevisionExists when the name is taken,
        CloudRunError on other failures (reason "invalid_argument" for a bad image or split).
        """
        ...

    def start_env_update(
        self,
        ref: ServiceRef,
        base_revision: str,
        env: EnvVar,
        revision_name: str,
        targets: list[TrafficTarget],
        etag: str,
        cloudsql_swap: tuple[str, str] | None = None,
    ) -> str:
        """Create revision ``revision_name`` from ``base_revision``'s containers (same image,
        same environment) with one variable of the ingress container set to ``env`` (a plain
        value or a Secret Manager reference), and set ``targets``, in one PATCH;
        ``cloudsql_swap`` (old, new) moves the Cloud SQL connection too. Returns the operation
        name; raises like ``start_deploy``.
        """
        ...


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status: int | None  # HTTP status, None when the request failed outright
    detail: str = ""  # e.g. "timeout", "connection refused", first bytes of the body
    elapsed_ms: float = 0.0
    # A configuration problem rather than a health answer: "reserved_path" (Google's front end
    # answered the path itself) or "invoker_denied" (403: Runback may not invoke the service).
    problem: str = ""


class Probe(Protocol):
    def get(self, url: str, timeout_s: float, audience: str | None = None) -> ProbeResult:
        """GET ``url``; with ``audience``, carry a Google ID token for it (IAM-protected)."""
        ...


@dataclass(frozen=True)
class FlagsAnswer:
    """What a service's own ``GET /config/flags`` said (shape: see bot/policy/flags.py)."""

    flags: dict[str, bool] | None  # None: no usable answer (see ``problem``)
    status: int | None = None  # HTTP status, None when the request failed outright
    problem: str = ""  # "", "unreachable", "http_status", "not_json", "bad_shape", or a
    # configuration problem as in ProbeResult ("reserved_path", "invoker_denied", "no_id_token")
    detail: str = ""


class ServiceConfigReader(Protocol):
    """A service's own view of its configuration, read over HTTP (the readiness check of
    ``/ops check`` reuses it)."""

    def flags(self, url: str, timeout_s: float, audience: str | None = None) -> FlagsAnswer:
        """GET ``{url}/config/flags``; with ``audience``, carry a Google ID token for it.
        Never raises: a failure is an answer with ``flags=None`` and its ``problem``."""
        ...


@dataclass(frozen=True)
class RevisionMetrics:
    """What Cloud Monitoring saw of one revision over ``[start, end]`` (the window queried)."""

    requests: int  # every request, all response classes
    errors: int  # 5xx answers
    p95_ms: float | None  # None: no latency data in the window
    start: datetime
    end: datetime

    @property
    def error_rate(self) -> float | None:
        """errors / requests; None when there were no requests (never read that as a pass)."""
        return self.errors / self.requests if self.requests else None


class MetricsError(Exception):
    """A Monitoring query failed after bounded retries; ``reason`` is a short machine code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Metrics(Protocol):
    def revision_metrics(
        self, ref: ServiceRef, revision: str, start: datetime, end: datetime
    ) -> RevisionMetrics:
        """Requests, 5xx errors and P95 latency of ``revision`` between ``start`` and ``end``.

        Raises MetricsError when Monitoring cannot answer.
        """
        ...

    def visible_until(
        self, ref: ServiceRef, revision: str, start: datetime, end: datetime
    ) -> datetime | None:
        """The end of the newest point Monitoring shows for ``revision`` in ``[start, end]``
        (Cloud Run's points become visible minutes late); None when there is none yet.

        Raises MetricsError when Monitoring cannot answer.
        """
        ...

    def minutes(
        self, ref: ServiceRef, revision: str, start: datetime, end: datetime
    ) -> list[Minute]:
        """Each minute Monitoring shows for ``revision`` in ``[start, end]``, with its requests
        and 5xx errors (Cloud Run writes one point a minute, visible minutes late; a minute
        without requests has no point).

        Raises MetricsError when Monitoring cannot answer.
        """
        ...


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    actor: str  # Slack user id, or "runback" for the bot itself
    action: str  # e.g. "rollback.requested", "rollback.refused", "cloudrun.traffic_update"
    outcome: str  # "ok", "refused", "failed", "pending", ...
    service: str = ""
    revision: str = ""
    operation_id: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class AuditSink(Protocol):
    """Where audit events go besides the database (Cloud Logging in production)."""

    def write(self, event: AuditEvent) -> None: ...


@dataclass(frozen=True)
class Message:
    """A rendered Slack message: fallback/notification text and Block Kit blocks."""

    text: str
    blocks: list[dict[str, Any]]


class ChatError(Exception):
    """Slack did not take a message. ``code`` is Slack's error (``ratelimited``,
    ``not_in_channel``...) or ``unreachable``/``timeout``; ``retry_after_s`` is Slack's
    Retry-After; ``maybe_sent`` is True when Slack may have acted before the answer was lost."""

    def __init__(
        self, code: str, retry_after_s: float | None = None, maybe_sent: bool = False
    ) -> None:
        super().__init__(code)
        self.code = code
        self.retry_after_s = retry_after_s
        self.maybe_sent = maybe_sent


@dataclass(frozen=True)
class Posted:
    channel: str  # Slack's channel id (chat.update and threads need the id, not a name)
    ts: str


class Chat(Protocol):
    def post(self, channel: str, message: Message, thread_ts: str | None = None) -> str:
        """Post a message; returns its ts."""
        ...

    def update(self, channel: str, ts: str, message: Message) -> None: ...

    def post_card(
        self, channel: str, message: Message, card: str, thread_ts: str | None = None
    ) -> Posted:
        """Post without retrying, tagged with ``card`` so that a lost answer can be looked up.
        Raises ChatError."""
        ...

    def update_card(self, channel: str, ts: str, message: Message) -> None:
        """Edit a posted message, without retrying. Raises ChatError."""
        ...

    def find_card(self, channel: str, card: str, oldest: str) -> str | None:
        """The ts of a message tagged ``card`` posted after ``oldest``, if Slack has one."""
        ...

    def reply(self, response_url: str, message: Message) -> None:
        """Answer a command privately through its response_url (works where the bot is not a
        member). Raises ChatError."""
        ...

    def ephemeral(self, channel: str, user: str, message: Message) -> None: ...

    def upload(
        self,
        channel: str,
        thread_ts: str | None,
        filename: str,
        content: str | bytes,
        title: str,
        comment: str,
    ) -> None:
        """Share a file in the channel (or its thread) with a comment. Raises ChatError."""
        ...


class LogReader(Protocol):
    def list_entries(
        self, filter_: str = "", max_results: int = 50, project: str | None = None
    ) -> list[dict[str, Any]]:
        """Log entries matching a Cloud Logging filter, newest first, from ``project`` (default
        Runback's own)."""
        ...


class Directory(Protocol):
    def group_members(self, handles: tuple[str, ...]) -> dict[str, set[str]]:
        """Members (user ids) of each user group named by handle."""
        ...

    def problem(self) -> str:
        """Slack's error when user groups could not be read at the last try; "" when they were."""
        ...

    def display_name(self, user_id: str) -> str | None:
        """How people know this user (Slack's display name, else real name); None if unknown."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


# -- Cloud SQL and Secret Manager (backups, restores) -----------------------------------------


@dataclass(frozen=True)
class SqlInstance:
    project: str
    name: str
    state: str  # Cloud SQL's SqlInstanceState name: RUNNABLE, PENDING_CREATE, MAINTENANCE, ...
    database_version: str  # e.g. POSTGRES_15
    region: str
    tier: str
    connection_name: str  # project:region:name, what /cloudsql/ sockets are named after
    ip_addresses: tuple[str, ...] = ()
    # What a clone copies of the instance's settings (Cloud SQL REST JSON, camelCase): edition,
    # tier, ipConfiguration, databaseFlags, availabilityType, disk, backupConfiguration...
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def runnable(self) -> bool:
        return self.state == "RUNNABLE"


@dataclass(frozen=True)
class Backup:
    """One backup run of an instance."""

    id: str
    automated: bool  # AUTOMATED, else ON_DEMAND
    status: str  # SqlBackupRunStatus name: SUCCESSFUL, RUNNING, ENQUEUED, FAILED, ...
    enqueued: datetime | None
    started: datetime | None
    ended: datetime | None
    description: str = ""
    error: str = ""

    @property
    def successful(self) -> bool:
        return self.status == "SUCCESSFUL"


@dataclass(frozen=True)
class SqlOperation:
    """A Cloud SQL operation (``sql#operation``): PENDING, RUNNING or DONE, with its error."""

    name: str
    project: str
    status: str  # PENDING | RUNNING | DONE
    operation_type: str  # CREATE, RESTORE_VOLUME, BACKUP_VOLUME, ...
    error: str = ""  # set when it ended badly
    backup_id: str = ""  # a backup's operation names its backup run
    started: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status == "DONE"


class CloudSqlError(Exception):
    """A Cloud SQL Admin call failed after bounded retries; ``reason`` is a short machine code
    (``not_found``, ``permission_denied``, ``conflict``, ``invalid_argument``,
    ``unavailable``...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class CloudSql(Protocol):
    def get_instance(self, project: str, instance: str) -> SqlInstance: ...

    def list_instances(self, project: str) -> list[SqlInstance]:
        """Every instance of the project (``instances.list``)."""
        ...

    def list_backups(self, project: str, instance: str, limit: int) -> list[Backup]:
        """The instance's newest ``limit`` backup runs, newest first."""
        ...

    def start_backup(self, project: str, instance: str, description: str) -> SqlOperation:
        """An on-demand backup (``backupRuns.insert``); its operation names the backup."""
        ...

    def start_create_instance(self, like: SqlInstance, name: str) -> SqlOperation:
        """A new, empty instance ``name`` with ``like``'s region, version and ``settings``
        (edition, tier, network, flags, availability, disk, backups: a backup restores data,
        not these)."""
        ...

    def start_restore(self, project: str, target: str, backup_id: str, source: str) -> SqlOperation:
        """Restore backup run ``backup_id`` of instance ``source`` into the existing instance
        ``target``, overwriting it (``instances.restoreBackup``)."""
        ...

    def get_operation(self, project: str, name: str) -> SqlOperation: ...

    def recent_operations(self, project: str, instance: str, limit: int = 20) -> list[SqlOperation]:
        """The instance's newest operations, newest start first (``operations.list``): how a
        bot that died before hearing an answer finds the operation it started."""
        ...


class SecretsError(Exception):
    """A Secret Manager call failed after bounded retries. Never carries a secret's value."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Secrets(Protocol):
    def access(self, project: str, secret: str, version: str) -> str:
        """The value of a version ("latest" or a number). Callers never show or log it."""
        ...

    def add_version(self, project: str, secret: str, value: str) -> str:
        """Add a version holding ``value``; returns its number."""
        ...

    def create_secret(self, project: str, secret: str) -> None:
        """A new secret (automatic replication); raises SecretsError("already_exists")."""
        ...

    def version_of(self, project: str, secret: str, version: str) -> str:
        """The number a version reference ("latest" or a number) stands for now."""
        ...

    def grant_accessor(self, project: str, secret: str, member: str) -> None:
        """Let ``member`` (``serviceAccount:EMAIL``) read this one secret's versions
        (``roles/secretmanager.secretAccessor`` on the secret, read-modify-write of its IAM
        policy); nothing wider."""
        ...

    def test_permissions(self, project: str, secret: str, permissions: list[str]) -> list[str]:
        """Which of ``permissions`` Runback holds on the secret (``testIamPermissions``)."""
        ...
