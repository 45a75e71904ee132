"""`/ops backup`'s state machine (see states.py): start the backup, follow it.

The Cloud SQL operation's name is committed before it is followed, so a restarted bot polls it
instead of starting a second backup; the check is due every ``poll_interval_s``.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime

from bot.ops.backups.record import commit, end
from bot.ops.backups.states import FINAL_STATES, BackupData
from bot.ops.backups.take import (
    BackupFailed,
    BackupOutcome,
    check_backup,
    finish_backup,
    start_backup,
)
from bot.ops.backups.target import Database, resolve_database
from bot.ops.context import Deps
from bot.ops.errors import Superseded
from bot.ops.stepping import advance, due_in
from bot.ports import CloudSqlError
from bot.store import Operation


def execute(deps: Deps, operation_id: str) -> Operation:
    """Advance the backup until it ends or waits for its next look (``due_at``)."""
    return advance(deps, operation_id, STEPS, name="backup")


def _database(deps: Deps, operation: Operation) -> Database:
    return resolve_database(deps, operation.service)


def _step_start(deps: Deps, operation: Operation) -> Operation:
    database = _database(deps, operation)
    try:
        pending = start_backup(
            deps, database, operation.reason, operation.requested_by, operation.id
        )
    except BackupFailed as error:
        return end(deps, operation, "failed", error=error.detail or error.reason)
    return commit(
        deps,
        operation,
        "backing_up",
        pending=pending,
        backup_id=pending.backup_id,
        op_status="PENDING",
        due_at=_due(deps),
    )


def _step_follow(deps: Deps, operation: Operation) -> Operation:
    data = BackupData.of(operation)
    pending = data.pending
    assert pending is not None  # committed with the state backing_up
    settings = deps.config.backups
    elapsed = (deps.clock.now() - datetime.fromisoformat(pending.started_at)).total_seconds()
    try:
        outcome = check_backup(deps, pending)
    except CloudSqlError as error:
        outcome = BackupOutcome(False, False, pending.backup_id, "", error.reason)
    if outcome.done:
        database = _database(deps, operation)
        try:
            backup_id = finish_backup(
                deps, database, pending, outcome, operation.requested_by, operation.id
            )
        except BackupFailed as error:
            return end(deps, operation, "failed", error=error.detail, backup_id=error.backup_id)
        return end(deps, operation, "succeeded", backup_id=backup_id)
    if elapsed >= settings.backup_timeout_s:
        return end(deps, operation, "failed", error="timeout", backup_id=outcome.backup_id)
    return commit(
        deps,
        operation,
        op_status=outcome.status or data.op_status,
        unreachable=outcome.error,
        elapsed_s=elapsed,
        due_at=_due(deps),
    )


STEPS = {"starting": _step_start, "backing_up": _step_follow}


def _due(deps: Deps) -> str:
    return due_in(deps, deps.config.backups.poll_interval_s)


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    operation = deps.store.operations.operation(operation_id)
    if operation is not None and operation.state not in FINAL_STATES:
        with suppress(Superseded):  # moved on meanwhile: what it is now stands
            end(deps, operation, "failed", error="internal")
