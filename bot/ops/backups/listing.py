"""`/ops backups`: an instance's recent backups, and a warning when the newest good one is old."""

from __future__ import annotations

from typing import Any

from bot.ops.backups.target import cloudsql, resolve_database
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.policy.databases import backup_age, newest_successful, stale
from bot.ports import Backup, CloudSqlError, Message


def backups_message(deps: Deps, target: str) -> Message:
    database = resolve_database(deps, target)
    settings = deps.config.backups
    try:
        backups = cloudsql(deps).list_backups(
            database.project, database.instance, settings.list_limit
        )
    except CloudSqlError as error:
        raise UserError(
            "error.db.cloudsql_unavailable",
            instance=database.instance,
            reason=error.reason,
            detail=error.detail or error.reason,
        ) from None
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
