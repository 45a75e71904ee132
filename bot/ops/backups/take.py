"""Taking an on-demand Cloud SQL backup: start it, follow its operation, report its id.

``start_backup`` + ``check_backup`` suit a durable workflow (commit the PendingBackup, check it
on each step); ``take_backup`` starts one and waits for it, for a caller that may block (the
release takes one before green when its migration is destructive).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from bot.ops.backups.target import Database, cloudsql, resolve_database
from bot.ops.context import BOT_ACTOR, Deps
from bot.ports import CloudSqlError


@dataclass(frozen=True)
class PendingBackup:
    """A backup that was started: enough to follow it after a restart (plain data)."""

    service: str
    project: str
    instance: str
    operation: str  # the Cloud SQL operation's name
    backup_id: str
    description: str
    started_at: str  # ISO time

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> PendingBackup:
        return cls(**data)


@dataclass(frozen=True)
class BackupOutcome:
    done: bool
    ok: bool
    backup_id: str
    status: str  # the operation's PENDING | RUNNING | DONE
    error: str = ""


class BackupFailed(Exception):
    """The backup could not be started, failed, or took longer than ``backup_timeout_s``.
    ``reason``: a short code (``start_failed``, ``failed``, ``timeout``, ``unavailable``)."""

    def __init__(self, reason: str, detail: str = "", backup_id: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.backup_id = backup_id


def default_description(deps: Deps, detail: str = "") -> str:
    """``Pre-deployment: DETAIL`` (the runbook's wording), or the prefix alone."""
    prefix = deps.config.backups.description
    return f"{prefix}: {detail}"[:500] if detail else prefix


def start_backup(
    deps: Deps, database: Database, description: str, actor: str, operation_id: str = ""
) -> PendingBackup:
    """``backupRuns.insert``; raises BackupFailed("start_failed") when Cloud SQL refuses."""
    try:
        started = cloudsql(deps).start_backup(database.project, database.instance, description)
    except CloudSqlError as error:
        _audit(deps, actor, database, "failed", operation_id, why=error.reason)
        raise BackupFailed("start_failed", error.detail or error.reason) from error
    pending = PendingBackup(
        service=database.service.name,
        project=database.project,
        instance=database.instance,
        operation=started.name,
        backup_id=started.backup_id,
        description=description,
        started_at=deps.clock.now().isoformat(),
    )
    _audit(deps, actor, database, "started", operation_id, backup_id=started.backup_id)
    return pending


def check_backup(deps: Deps, pending: PendingBackup) -> BackupOutcome:
    """Where the backup is now. Raises CloudSqlError when Cloud SQL cannot say (after its
    bounded retries): the caller decides whether to look again later."""
    operation = cloudsql(deps).get_operation(pending.project, pending.operation)
    backup_id = operation.backup_id or pending.backup_id
    if not operation.done:
        return BackupOutcome(False, False, backup_id, operation.status)
    return BackupOutcome(True, not operation.error, backup_id, operation.status, operation.error)


def take_backup(
    deps: Deps,
    service: str,
    description: str = "",
    actor: str = BOT_ACTOR,
    operation_id: str = "",
) -> str:
    """Take an on-demand backup of ``service``'s database and wait for it; returns its id.

    For the release workflow: ``take_backup(deps, "wa-backend", default_description(deps,
    "release wa-backend-00004"))`` before green gets traffic. Audited (``backup.started``,
    ``backup.succeeded`` / ``backup.failed``). Blocks up to ``backups.backup_timeout_s``,
    polling every ``backups.poll_interval_s`` (sandbox time in the sandbox). Raises
    BackupFailed (and UserError when the service names no database)."""
    database = resolve_database(deps, service)
    pending = start_backup(
        deps, database, description or default_description(deps), actor, operation_id
    )
    settings = deps.config.backups
    deadline = deps.clock.now() + timedelta(seconds=settings.backup_timeout_s)
    while True:
        try:
            outcome = check_backup(deps, pending)
        except CloudSqlError as error:
            outcome = BackupOutcome(False, False, pending.backup_id, f"unknown ({error.reason})")
        if outcome.done:
            return finish_backup(deps, database, pending, outcome, actor, operation_id)
        if deps.clock.now() >= deadline:
            _audit(deps, actor, database, "failed", operation_id, why="timeout")
            raise BackupFailed("timeout", pending.operation, pending.backup_id)
        deps.clock.sleep(settings.poll_interval_s)


def finish_backup(
    deps: Deps,
    database: Database,
    pending: PendingBackup,
    outcome: BackupOutcome,
    actor: str,
    operation_id: str = "",
) -> str:
    """Audit the end of a backup; its id, or BackupFailed("failed")."""
    if not outcome.ok:
        _audit(deps, actor, database, "failed", operation_id, backup_id=outcome.backup_id)
        raise BackupFailed("failed", outcome.error, outcome.backup_id)
    _audit(deps, actor, database, "succeeded", operation_id, backup_id=outcome.backup_id)
    return outcome.backup_id


def _audit(
    deps: Deps, actor: str, database: Database, what: str, operation_id: str, **detail: Any
) -> None:
    outcome = {"started": "ok", "succeeded": "ok"}.get(what, what)
    deps.audit(
        actor,
        f"backup.{what}",
        outcome,
        service=database.service.name,
        operation_id=operation_id,
        instance=database.instance,
        **detail,
    )
