"""The runbook's "Backups Pre-Deployment": a release whose migration is destructive (or
unknown) takes an on-demand Cloud SQL backup of its service's database before green is deployed,
and waits for it in state ``backing_up``, followed durably like every other step (the Cloud SQL
operation's name is stored, so a restarted Runback follows the same backup).

No backup, no green: a backup that cannot start, fails or outlasts ``backups.backup_timeout_s``
ends the release before anything is deployed, and the card says why. A service that names no
database in app.yaml gets no backup from Runback, and its card says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.ops.backups.take import (
    BackupFailed,
    PendingBackup,
    check_backup,
    default_description,
    finish_backup,
    start_backup,
)
from bot.ops.backups.target import resolve_database
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import UserError
from bot.ops.release.record import commit, end
from bot.ops.release.states import ReleaseBackup, ReleaseData
from bot.ops.stepping import due_in
from bot.ports import CloudSqlError
from bot.store import Operation


def before_green(deps: Deps, operation: Operation) -> Operation | None:
    """Start the pre-deployment backup of a guarded release (state ``backing_up``); None when
    no backup is due, so the deploy goes on at once."""
    if not ReleaseData.of(operation).guarded:
        return None
    if deps.managed_service(operation.service).database is None:
        _audit_skipped(deps, operation, "no_database")
        return commit(deps, operation, backup=ReleaseBackup(status="no_database"))
    description = default_description(deps, f"release {operation.to_revision}")
    try:
        database = resolve_database(deps, operation.service)
        pending = start_backup(deps, database, description, BOT_ACTOR, operation.id)
    except (BackupFailed, UserError) as error:
        return _failed(deps, operation, getattr(error, "detail", "") or _why(error))
    deadline = deps.clock.now() + timedelta(seconds=deps.config.backups.backup_timeout_s)
    backup = ReleaseBackup(
        status="running",
        backup_id=pending.backup_id,
        instance=pending.instance,
        cloudsql="PENDING",
        pending=pending.to_data(),
        deadline=deadline.isoformat(),
    )
    return commit(deps, operation, "backing_up", backup=backup, due_at=_next_look(deps))


def step_backup(deps: Deps, operation: Operation) -> Operation:
    release = ReleaseData.of(operation)
    if release.stop_requested:  # nothing deployed yet: nothing to undo
        return end(deps, operation, "failed", release.outcome or {"code": "stopped"})
    backup = release.backup
    assert backup is not None and backup.pending is not None, "a backup is followed once started"
    pending = PendingBackup.from_data(backup.pending)
    try:
        outcome = check_backup(deps, pending)
    except CloudSqlError as error:  # Cloud SQL did not say (after retries): look again later
        return _still_running(deps, operation, backup, f"unknown ({error.reason})")
    if not outcome.done:
        return _still_running(deps, operation, backup, outcome.status)
    try:
        backup_id = finish_backup(
            deps,
            resolve_database(deps, operation.service),
            pending,
            outcome,
            BOT_ACTOR,
            operation.id,
        )
    except BackupFailed as error:
        return _failed(deps, operation, error.detail or error.reason, error.backup_id)
    done = ReleaseBackup(status="succeeded", backup_id=backup_id, instance=pending.instance)
    return commit(deps, operation, "deploying", backup=done, due_at=None)


def _still_running(
    deps: Deps, operation: Operation, backup: ReleaseBackup, cloudsql_status: str
) -> Operation:
    if backup.deadline and deps.clock.now() >= datetime.fromisoformat(backup.deadline):
        _audit_skipped(deps, operation, "timeout", outcome="failed")
        return _failed(deps, operation, "timeout", backup.backup_id)
    still = backup.model_copy(update={"cloudsql": cloudsql_status})
    return commit(deps, operation, backup=still, due_at=_next_look(deps))


def _failed(deps: Deps, operation: Operation, detail: str, backup_id: str = "") -> Operation:
    before = ReleaseData.of(operation).backup or ReleaseBackup(status="failed")
    backup = before.model_copy(update={"status": "failed", "backup_id": backup_id})
    operation = commit(deps, operation, backup=backup)
    return end(deps, operation, "failed", {"code": "backup_failed", "detail": detail[:300]})


def _next_look(deps: Deps) -> str:
    return due_in(deps, deps.config.backups.poll_interval_s)


def _why(error: Exception) -> str:
    return getattr(error, "key", "") or type(error).__name__


def _audit_skipped(deps: Deps, operation: Operation, why: str, outcome: str = "skipped") -> None:
    deps.audit(
        BOT_ACTOR,
        "release.pre_deployment_backup",
        outcome,
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        why=why,
    )
