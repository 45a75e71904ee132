"""app.yaml -> typed, validated configuration. A broken file fails at start with the key's path."""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Role(StrEnum):
    DEVELOPER = "developer"
    SENIOR_DEVELOPER = "senior_developer"
    TECH_LEAD = "tech_lead"
    ON_CALL = "on_call"


class Approval(StrEnum):
    AUTO = "auto"
    SELF = "self"
    ONE_OTHER_TECH_LEAD = "one_other_tech_lead"


class Action(StrEnum):
    DEPLOY_STAGING = "deploy_staging"
    CANARY = "canary"
    FULL_TRAFFIC = "full_traffic"
    EMERGENCY_ROLLBACK = "emergency_rollback"
    SCHEDULED_ROLLBACK = "scheduled_rollback"
    # Approval-only rows (who asks is decided by canary / the rollback rows): a release that
    # carries a destructive (or unknown) migration, before green gets any traffic, and a
    # rollback to a revision older than one that shipped such a migration.
    DESTRUCTIVE_MIGRATION = "destructive_migration"
    ROLLBACK_PAST_MIGRATION = "rollback_past_migration"
    FEATURE_FLAG = "feature_flag"  # a flag flip on a production service
    FEATURE_FLAG_STAGING = "feature_flag_staging"  # a flag flip on a staging service
    BACKUP = "backup"  # an on-demand Cloud SQL backup
    RESTORE = "restore"  # a backup restored to a new instance, the service moved onto it
    DRILL = "drill"
    READINESS_OVERRIDE = "readiness_override"


APPROVAL_ONLY_ACTIONS = frozenset({Action.DESTRUCTIVE_MIGRATION, Action.ROLLBACK_PAST_MIGRATION})


class Strict(BaseModel):
    # .inf and .nan are YAML numbers; no setting means them
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


DAY_S = 24 * 3600
DAY_MIN = 24 * 60


class ChannelConfig(Strict):
    id: str = Field(pattern=r"^[CG][A-Z0-9]+$")
    name: str

    @field_validator("name")
    @classmethod
    def _strip_hash(cls, value: str) -> str:
        return value.lstrip("#")


class Channels(Strict):
    incidents: ChannelConfig
    # where releases started by CI (POST /ci/releases) post their card; default: incidents
    releases: ChannelConfig | None = None

    @property
    def team(self) -> ChannelConfig:
        return self.releases or self.incidents


REGISTRY_PREFIX = r"^[a-z0-9][a-z0-9.-]*(:[0-9]+)?(/[a-z0-9._-]+)*/?$"


def _registry_prefixes(prefixes: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """``host/`` or ``host/path/`` prefixes of image names, each ending in one slash."""
    if prefixes is None:
        return None
    for prefix in prefixes:
        if not re.fullmatch(REGISTRY_PREFIX, prefix):
            raise ValueError(
                f"{prefix!r} is not a registry prefix (like us-docker.pkg.dev/PROJECT/)"
            )
    return tuple(prefix.rstrip("/") + "/" for prefix in prefixes)


SECRET_ID = r"^[A-Za-z0-9_-]{1,255}$"  # Secret Manager's secret ids
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Cloud SQL instance ids: lower-case letters, digits and hyphens, a letter first, at most 98
# characters with the project (https://cloud.google.com/sql/docs/postgres/create-instance)
INSTANCE_ID = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"


class DatabaseConfig(Strict):
    """The service's Cloud SQL instance and the Secret Manager secret its DATABASE_URL is read
    from (the Cloud Run service reads ``env`` from ``secret`` through ``secretKeyRef``)."""

    instance: str = Field(pattern=INSTANCE_ID)
    project: str | None = Field(default=None, min_length=1)  # default: the service's project
    secret: str = Field(pattern=SECRET_ID)
    env: str = Field(default="DATABASE_URL", pattern=ENV_NAME)


# The traffic tags Runback puts on revisions it checks before they get traffic (a release's
# green, a flag flip's, a restore's, a drill's), and Cloud Run's limit on a tag URL: "Combined
# traffic tag and service name cannot exceed 46 characters" (400 INVALID_ARGUMENT otherwise).
RUNBACK_TAGS = ("green", "flag", "restored", "drill")
TAG_URL_LIMIT = 46


class ServiceConfig(Strict):
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
    project: str = Field(min_length=1)
    region: str = Field(min_length=1)
    environment: Literal["production", "staging"]
    # Not /healthz, which Google's front end answers itself: see docs/real-platform.md.
    health_path: str = Field(default="/health", pattern=r"^/")
    auto_rollback: bool = True  # an incident whose numbers say "roll back now" rolls back
    url: str | None = Field(default=None, pattern=r"^https?://[^/\s?#]+$")  # a custom domain
    requires_auth: bool = False  # IAM-protected: probes carry an ID token
    # images /deploy may release to production; None: release.registries, else its own registry
    registries: tuple[str, ...] | None = None
    database: DatabaseConfig | None = None  # its Cloud SQL instance and DATABASE_URL secret

    @field_validator("name")
    @classmethod
    def _fits_runback_tags(cls, name: str) -> str:
        longest = max(RUNBACK_TAGS, key=len)
        if len(name) + len(longest) > TAG_URL_LIMIT:
            raise ValueError(
                f"{name!r} is {len(name)} characters: Cloud Run allows a traffic tag and the "
                f"service name {TAG_URL_LIMIT} characters together, and Runback tags revisions "
                f"{', '.join(repr(t) for t in RUNBACK_TAGS)}; a managed service's name may have "
                f"at most {TAG_URL_LIMIT - len(longest)}"
            )
        return name

    @field_validator("registries")
    @classmethod
    def _prefixes(cls, prefixes: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _registry_prefixes(prefixes)

    @property
    def database_project(self) -> str:
        return (self.database.project if self.database else None) or self.project


class RoleMembers(Strict):
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # user-group handles, without "@"

    @field_validator("users")
    @classmethod
    def _user_ids(cls, users: tuple[str, ...]) -> tuple[str, ...]:
        for user in users:
            if not (user[:1] in ("U", "W") and user.isalnum() and user.isupper()):
                raise ValueError(f"{user!r} is not a Slack user ID (like U0123ABCD)")
        return users

    @field_validator("groups")
    @classmethod
    def _handles(cls, groups: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(group.lstrip("@") for group in groups)


class Roles(Strict):
    tech_lead: RoleMembers = RoleMembers()
    senior_developer: RoleMembers = RoleMembers()
    developer: RoleMembers = RoleMembers()
    on_call: RoleMembers = RoleMembers()

    def members(self, role: Role) -> RoleMembers:
        return getattr(self, role.value)


class MatrixRow(Strict):
    requester: Role
    approval: Approval
    incidents_channel_only: bool = False


class FlagRows(Strict):
    """Who may flip a feature flag (``/flag``), per environment of the service."""

    production: MatrixRow = MatrixRow(requester=Role.SENIOR_DEVELOPER, approval=Approval.SELF)
    staging: MatrixRow = MatrixRow(requester=Role.DEVELOPER, approval=Approval.AUTO)

    @field_validator("production", "staging")
    @classmethod
    def _runs_at_once(cls, row: MatrixRow) -> MatrixRow:
        if row.approval is Approval.ONE_OTHER_TECH_LEAD:
            raise ValueError("a flag flip runs at once: approval must be auto or self")
        return row


class Approvals(Strict):
    deploy_staging: MatrixRow
    canary: MatrixRow
    full_traffic: MatrixRow
    emergency_rollback: MatrixRow
    scheduled_rollback: MatrixRow
    # The runbook: destructive migrations are "no permitidas sin aprobación". An approval is a
    # second person's judgement, so by default a tech lead other than the requester gives it.
    destructive_migration: MatrixRow = MatrixRow(
        requester=Role.SENIOR_DEVELOPER, approval=Approval.ONE_OTHER_TECH_LEAD
    )
    rollback_past_migration: MatrixRow = MatrixRow(
        requester=Role.ON_CALL, approval=Approval.ONE_OTHER_TECH_LEAD
    )
    feature_flag: FlagRows = FlagRows()  # optional: older app.yaml files have no such row
    # rows added after the first app.yaml files: older files load with the runbook's defaults
    backup: MatrixRow = MatrixRow(requester=Role.SENIOR_DEVELOPER, approval=Approval.SELF)
    restore: MatrixRow = MatrixRow(requester=Role.TECH_LEAD, approval=Approval.ONE_OTHER_TECH_LEAD)
    # the monthly rollback drill on a staging service (/ops drill); the scheduled one is Runback's
    drill: MatrixRow = MatrixRow(requester=Role.DEVELOPER, approval=Approval.AUTO)
    # releasing to production past a ❌ of the rollback-readiness checklist
    readiness_override: MatrixRow = MatrixRow(requester=Role.TECH_LEAD, approval=Approval.SELF)
    approval_ttl_minutes: int = Field(default=30, gt=0, le=24 * 60)

    def row(self, action: Action) -> MatrixRow:
        if action is Action.FEATURE_FLAG:
            return self.feature_flag.production
        if action is Action.FEATURE_FLAG_STAGING:
            return self.feature_flag.staging
        return getattr(self, action.value)


class Thresholds(Strict):
    error_rate_rollback: float = Field(default=0.05, gt=0, le=1)
    error_rate_observe: float = Field(default=0.01, ge=0, le=1)
    p95_rollback_ms: float = Field(default=2000, gt=0, le=DAY_S * 1000)
    p95_proceed_ms: float = Field(default=800, gt=0, le=DAY_S * 1000)
    observe_minutes: float = Field(default=5, gt=0, le=DAY_MIN)
    min_requests: int = Field(default=50, ge=1, le=10**9)
    window_minutes: float = Field(default=5, gt=0, le=DAY_MIN)  # how far back a judgement looks
    observe_check_s: float = Field(
        default=30, gt=0, le=DAY_S
    )  # re-judge this often while observing

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.error_rate_observe >= self.error_rate_rollback:
            raise ValueError("error_rate_observe must be below error_rate_rollback")
        if self.p95_proceed_ms >= self.p95_rollback_ms:
            raise ValueError("p95_proceed_ms must be below p95_rollback_ms")
        return self


class RollbackSettings(Strict):
    health_checks: int = Field(default=3, ge=1, le=20)
    health_check_interval_s: float = Field(default=1.0, ge=0, le=600)
    health_check_timeout_s: float = Field(default=3.0, gt=0, le=600)
    operation_timeout_s: float = Field(default=120, gt=0, le=DAY_S)
    # a second `/rollback SERVICE` (no revision) this soon after a rollback asks first; 0: never
    repeat_window_minutes: float = Field(default=15, ge=0, le=DAY_S / 60)


class ReleaseSettings(Strict):
    steps: tuple[int, ...] = (10, 50, 100)  # percent of traffic on green, in order
    smoke_checks: int = Field(default=3, ge=1, le=20)  # consecutive /healthz 200s on green
    warmup_s: float = Field(default=60, ge=0, le=DAY_S)  # after a shift, before the first judgement
    judge_interval_s: float = Field(default=60, gt=0, le=DAY_S)
    inconclusive_limit_s: float = Field(default=600, gt=0, le=7 * DAY_S)  # then a person decides
    validation_s: float = Field(default=300, ge=0, le=DAY_S)  # judged once more at 100%
    operation_timeout_s: float = Field(default=300, gt=0, le=7 * DAY_S)
    # image prefixes /deploy may release to production (a service's own list wins); empty: each
    # service's own Artifact Registry (REGION-docker.pkg.dev/PROJECT/ and its multi-region)
    registries: tuple[str, ...] = ()

    @field_validator("registries")
    @classmethod
    def _prefixes(cls, prefixes: tuple[str, ...]) -> tuple[str, ...]:
        return _registry_prefixes(prefixes) or ()

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or steps[-1] != 100:
            raise ValueError("must end at 100")
        if any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError("must be increasing percentages between 1 and 100")
        return steps


class BackupSettings(Strict):
    """Cloud SQL backups and restores ("Backup Strategy" of the runbook)."""

    max_age_hours: float = Field(default=24, gt=0, le=24 * 365)  # newest good backup older: warn
    list_limit: int = Field(default=10, ge=1, le=100)  # backups /ops backups shows
    poll_interval_s: float = Field(default=10, gt=0, le=600)  # Cloud SQL operations, polled
    backup_timeout_s: float = Field(default=3600, gt=0, le=7 * DAY_S)
    restore_timeout_s: float = Field(default=4 * 3600, gt=0, le=7 * DAY_S)  # create + restore
    description: str = Field(default="Pre-deployment", min_length=1, max_length=200)


class ReadinessSettings(Strict):
    """The runbook's pre-production checklist (/ops check, a production /deploy's card)."""

    deadline_s: float = Field(default=4.0, gt=0, le=60)  # evidence not in by then is ⚠️
    block_production: bool = True  # a ❌ stops a production /deploy until a tech lead overrides
    dr_review_days: int = Field(default=90, gt=0, le=3650)
    drill_max_age_days: int = Field(default=31, gt=0, le=3650)
    # who must click "I've read it" on the rollback procedure (/ops procedure): every member
    acknowledge_roles: tuple[Role, ...] = (Role.ON_CALL, Role.TECH_LEAD)


class DisasterRecovery(Strict):
    """Where the disaster-recovery runbook lives and when it was last reviewed."""

    url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    reviewed: str = ""  # YYYY-MM-DD

    @field_validator("reviewed", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> object:
        if isinstance(value, date):  # YAML reads 2026-11-02 as a date
            return value.isoformat()
        if isinstance(value, str) and value:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
        return value

    @property
    def reviewed_on(self) -> date | None:
        return date.fromisoformat(self.reviewed) if self.reviewed else None


class DrillSettings(Strict):
    """The monthly rollback drill ("Test Rollback Mensual")."""

    service: str = ""  # default: the first staging service
    every_days: float = Field(default=30, ge=0, le=3650)  # 0: no schedule, /ops drill only
    grace_hours: float = Field(default=24, ge=0, le=24 * 365)  # overdue by more: "missed"
    channel: str = Field(default="", pattern=r"^([CG][A-Z0-9]+)?$")  # default: incidents
    # When the schedule begins: a team that never drilled has its first drill due then (a
    # working hour of its choosing). Unset: it begins at Runback's first tick, remembered in
    # the database, and the first drill falls due every_days later.
    start: datetime | None = None

    @field_validator("start")
    @classmethod
    def _start_has_a_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give the time zone, e.g. 2026-12-07T10:00:00Z")
        return value


class SlackSettings(Strict):
    """Delivering cards and messages to Slack (the outbox, bot/ops/cards.py)."""

    # A delivery is claimed for this long: if its instance dies mid-delivery, another one (or
    # the restarted one) sends it after that. Longer than one delivery to Slack takes.
    claim_s: float = Field(default=20, gt=0, le=600)
    # A post whose answer was lost may still land in Slack: look for it after this, not at once.
    lost_answer_wait_s: float = Field(default=15, ge=0, le=600)


class SandboxUser(Strict):
    id: str
    real_name: str = ""


class SandboxGroup(Strict):
    id: str
    users: tuple[str, ...] = ()


class Sandbox(Strict):
    users: dict[str, SandboxUser] = {}
    usergroups: dict[str, SandboxGroup] = {}
    channels: dict[str, str] = {}
    # The console shows a line's output, and `wait` moves sandbox time on, once the bot has
    # been quiet this long: a margin for work that starts just after other work ends. Every
    # `wait` pays it at each step that falls due on the way (the test suite sets it lower).
    settle_s: float = Field(default=0.05, ge=0, le=5)


class Config(Strict):
    locale: Literal["en", "es"] = "en"
    channels: Channels
    services: tuple[ServiceConfig, ...] = Field(min_length=1)
    roles: Roles
    approvals: Approvals
    thresholds: Thresholds = Thresholds()
    rollback: RollbackSettings = RollbackSettings()
    release: ReleaseSettings = ReleaseSettings()
    backups: BackupSettings = BackupSettings()
    readiness: ReadinessSettings = ReadinessSettings()
    disaster_recovery: DisasterRecovery = DisasterRecovery()
    drill: DrillSettings = DrillSettings()
    slack: SlackSettings = SlackSettings()
    sandbox: Sandbox = Sandbox()

    @field_validator("services")
    @classmethod
    def _unique_names(cls, services: tuple[ServiceConfig, ...]) -> tuple[ServiceConfig, ...]:
        names = [s.name for s in services]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"service names must be unique; repeated: {', '.join(duplicates)}")
        return services

    @model_validator(mode="after")
    def _drill_service_is_staging(self) -> Config:
        name = self.drill.service
        service = self.service(name) if name else None
        if name and (service is None or service.environment != "staging"):
            raise ValueError(f"drill.service: {name!r} is not a staging service of services[]")
        return self

    @property
    def drill_service(self) -> str:
        """The service the scheduled drill runs on: drill.service, else the first staging one."""
        staging = [s.name for s in self.services if s.environment == "staging"]
        return self.drill.service or (staging[0] if staging else "")

    @property
    def team_channel(self) -> str:
        return self.drill.channel or self.channels.incidents.id

    def service(self, name: str) -> ServiceConfig | None:
        return next((s for s in self.services if s.name == name), None)

    def service_of_instance(self, instance: str) -> ServiceConfig | None:
        """The (first) service whose database is Cloud SQL instance ``instance``."""
        return next(
            (s for s in self.services if s.database and s.database.instance == instance), None
        )

    @property
    def service_names(self) -> list[str]:
        return [s.name for s in self.services]


class ConfigError(Exception):
    """app.yaml is missing, not YAML, or not what Runback expects; the message says where."""


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def format_errors(error: ValidationError) -> str:
    items = error.errors()
    locations = [tuple(item["loc"]) for item in items]
    lines = []
    for item in items:
        loc = tuple(item["loc"])
        if any(other[: len(loc)] == loc and other != loc for other in locations):
            continue  # a container error caused by its broken children: the children say more
        message = item["msg"]
        if item["type"] == "missing":
            message = "field required"
        elif item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        lines.append(f"{_location(item['loc'])}: {message}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, except that a key given twice in one mapping is an error: YAML would keep
    the last one silently (a second ``roles:`` block replaced the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                first = seen[key].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def parse_config(text: str, source: str = "app.yaml") -> Config:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of keys (locale, services, roles, ...)")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source} is invalid:\n{format_errors(error)}") from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    path = Path(path or os.environ.get("RUNBACK_CONFIG") or "app.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
            f"{error.start}); save it as UTF-8"
        ) from None
    return parse_config(text, str(path))
