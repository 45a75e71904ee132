"""Cloud SQL backups: ``/ops backup`` (a durable operation with one live card), ``/ops backups``
(the recent ones), and ``take_backup`` for other workflows (the release's pre-green backup)."""

from bot.ops.backups.listing import backups_message, newest_backup_age, recent_backups
from bot.ops.backups.take import BackupFailed, default_description, take_backup
from bot.ops.backups.workflow import (
    FINAL_STATES,
    RUNNING_STATES,
    BackupRequest,
    decided,
    execute,
    fail_unexpectedly,
    on_decided,
    on_expired,
    refresh,
    request_backup,
)

__all__ = [
    "FINAL_STATES",
    "RUNNING_STATES",
    "BackupFailed",
    "BackupRequest",
    "backups_message",
    "decided",
    "default_description",
    "execute",
    "fail_unexpectedly",
    "newest_backup_age",
    "on_decided",
    "on_expired",
    "recent_backups",
    "refresh",
    "request_backup",
    "take_backup",
]
