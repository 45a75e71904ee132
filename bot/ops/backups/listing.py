"""`/ops backups`: an instance's recent backups, and a warning when the newest good one is old."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.ops.backups.target import cloudsql, resolve_database
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.policy.databases import backup_age, newest_successful, stale
from bot.ports import Backup, CloudSqlError, Message


def recent_backups(deps: Deps, target: str, limit: int | None = None) -> list[Backup]:
    """The newest backups of SERVICE's (or INSTANCE's) database, newest first: id, automated
    or on demand, status, enqueue/start/end times, description. Raises UserError (unknown
    target, no database, Cloud SQL unavailable after its retries)."""
    database = resolve_database(deps, target)
    try:
        return cloudsql(deps).list_backups(
            database.project, database.instance, limit or deps.config.backups.list_limit
        )
    except CloudSqlError as error:
        raise UserError(
            "error.db.cloudsql_unavailable",
            instance=database.instance,
            reason=error.reason,
            detail=error.detail or error.reason,
        ) from None


def newest_backup_age(deps: Deps, target: str) -> timedelta | None:
    """How old the newest successful backup is; None when there is none among the recent ones
    (for readiness checks: compare with ``backups.max_age_hours``)."""
    newest = newest_successful(recent_backups(deps, target))
    return backup_age(newest, deps.clock.now()) if newest else None


def backups_message(deps: Deps, target: str) -> Message:
    database = resolve_database(deps, target)
    settings = deps.config.backups
    backups = recent_backups(deps, target)
    now = deps.clock.now()
    newest = newest_successful(backups)
    return deps.renderer.message(
        "db_backups",
        service=database.service.name,
        instance=database.instance,
        rows=[_row(b, now) for b in backups],
        newest=_row(newest, now) if newest else None,
        stale=stale(backups, now, settings.max_age_hours),
        max_age_hours=settings.max_age_hours,
    )


def _row(backup: Backup, now: Any) -> dict[str, Any]:
    moment = backup.ended or backup.started or backup.enqueued
    return {
        "id": backup.id,
        "automated": backup.automated,
        "status": backup.status,
        "successful": backup.successful,
        "age_s": backup_age(backup, now).total_seconds() if moment else None,
        "at": moment,
        "description": backup.description,
        "error": backup.error,
    }
