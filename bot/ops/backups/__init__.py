"""Cloud SQL backups: ``/ops backup`` (a durable operation with one live card), ``/ops backups``
(the recent ones), and ``take_backup`` for other workflows (the release's pre-green backup)."""

from bot.ops.backups.listing import backups_message, newest_backup_age, recent_backups
from bot.ops.backups.machine import execute, fail_unexpectedly
from bot.ops.backups.people import decided, on_decided, on_expired
from bot.ops.backups.request import BackupRequest, request_backup
from bot.ops.backups.states import FINAL_STATES, RUNNING_STATES
from bot.ops.backups.take import BackupFailed, default_description, take_backup
from bot.ops.backups.view import refresh
from bot.ops.workflow import Workflow

__all__ = [
    "FINAL_STATES",
    "RUNNING_STATES",
    "WORKFLOW",
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

WORKFLOW = Workflow(
    kind="backup",
    running_states=RUNNING_STATES,
    execute=execute,
    fail_unexpectedly=fail_unexpectedly,
    on_decided=on_decided,
    on_expired=on_expired,
)
