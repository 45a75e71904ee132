"""An on-demand backup's states, and what it keeps (``BackupData``, its typed data).

awaiting_approval (only if the matrix asks for one) -> starting -> backing_up -> succeeded |
failed (or rejected / expired / cancelled).
"""

from __future__ import annotations

from bot.ops.backups.take import PendingBackup
from bot.ops.operation_data import OperationData

KIND = "backup"
RUNNING_STATES = ("starting", "backing_up")
FINAL_STATES = ("succeeded", "failed", "rejected", "expired", "cancelled")

DATA_VERSION = 1


class BackupData(OperationData):
    """What a backup operation keeps in ``Operation.data``, typed, stored as JSON with its
    ``version``. Data written before this type has no ``version``: it is version 1, the same
    shape. A later shape gets the next version and ``of`` upgrades older data as it reads it.
    Keys this type does not name are not a backup's (``seq``, the store's count of
    compare-and-set writes): read past, and left as they are by every write."""

    version: int = DATA_VERSION
    instance: str
    project: str
    pending: PendingBackup | None = None  # the backup started: followed after a restart too
    backup_id: str = ""
    op_status: str = ""  # the Cloud SQL operation's PENDING | RUNNING | DONE
    unreachable: str = ""  # why Cloud SQL did not say, at the last look ("" when it did)
    elapsed_s: float | None = None  # since the backup started, at the last look
    total_s: float | None = None  # from the request to the end
    error: str = ""
    due_at: str | None = None  # the next look (ISO time): the step loop waits for it
