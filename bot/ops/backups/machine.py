"""`/ops backup`: an on-demand backup as a durable operation with one live card.

awaiting_approval (only if the matrix asks for one) -> starting -> backing_up -> succeeded |
failed. The Cloud SQL operation's name is committed before it is followed, so a restarted bot
polls it instead of starting a second backup; the check is due every ``poll_interval_s``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.config import Action
from bot.ops.approvals import request_approval
from bot.ops.backups.take import (
    BackupFailed,
    BackupOutcome,
    PendingBackup,
    check_backup,
    default_description,
    finish_backup,
    start_backup,
)
from bot.ops.backups.target import Database, authorize_database, resolve_database
from bot.ops.cards import approval_view, operation_card, show
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import UserError
from bot.policy.approvals import Verdict, who_may_approve
from bot.ports import CloudSqlError
from bot.store import Move, Operation

KIND = "backup"
RUNNING_STATES = ("starting", "backing_up")
FINAL_STATES = ("succeeded", "failed", "rejected", "expired", "cancelled")
MAX_DESCRIPTION = 300


@dataclass(frozen=True)
class BackupRequest:
    target: str  # SERVICE or INSTANCE
    description: str
    user: str
    channel: str


def request_backup(deps: Deps, request: BackupRequest) -> Operation:
    """Authorize and record an on-demand backup (nothing is started before the record)."""
    database, decision = authorize_database(
        deps,
        Action.BACKUP,
        request.target,
        request.user,
        request.channel,
        lambda service, why: _refuse(deps, request, service, why),
    )
    if _running_on(deps, database.service.name):
        raise UserError("error.db.backup_running", instance=database.instance)
    given = " ".join(request.description.split())[:MAX_DESCRIPTION]
    description = given or default_description(deps, f"/ops backup by {request.user}")
    return _create(deps, request, database, description, decision.verdict)


def _create(
    deps: Deps, request: BackupRequest, database: Database, description: str, verdict: Verdict
) -> Operation:
    now = deps.clock.now()
    state = "awaiting_approval" if verdict is Verdict.NEEDS_APPROVAL else "starting"
    operation = deps.store.create_operation(
        now,
        kind=KIND,
        service=database.service.name,
        requested_by=request.user,
        channel=request.channel,
        reason=description,
        emergency=False,
        state=state,
        data={"instance": database.instance, "project": database.project},
    )
    if state == "awaiting_approval":
        request_approval(deps, operation.id, Action.BACKUP, request.user)
    deps.audit(
        request.user,
        "backup.requested",
        "ok" if state == "starting" else "pending",
        service=database.service.name,
        operation_id=operation.id,
        instance=database.instance,
        description=description,
    )
    refresh(deps, operation.id)
    return deps.store.operation(operation.id) or operation


def _running_on(deps: Deps, service: str) -> bool:
    return any(
        o.kind == KIND and o.service == service and o.state in RUNNING_STATES
        for o in deps.store.unfinished_operations()
    )


def _refuse(deps: Deps, request: BackupRequest, service: str, why: str) -> None:
    deps.audit(request.user, "backup.refused", "refused", service=service, why=why)


# -- the machine ------------------------------------------------------------------------------


def execute(deps: Deps, operation_id: str) -> Operation:
    operation = deps.store.operation(operation_id)
    assert operation is not None
    while operation.state in RUNNING_STATES:
        due = operation.data.get("due_at")
        if due and datetime.fromisoformat(due) > deps.clock.now():
            break
        operation = STEPS[operation.state](deps, operation)
    return operation


def _database(deps: Deps, operation: Operation) -> Database:
    return resolve_database(deps, operation.service)


def _step_start(deps: Deps, operation: Operation) -> Operation:
    database = _database(deps, operation)
    try:
        pending = start_backup(
            deps, database, operation.reason, operation.requested_by, operation.id
        )
    except BackupFailed as error:
        return _end(deps, operation, "failed", error=error.detail or error.reason)
    return _commit(
        deps,
        operation,
        "backing_up",
        pending=pending.to_data(),
        backup_id=pending.backup_id,
        op_status="PENDING",
        due_at=_due(deps),
    )


def _step_follow(deps: Deps, operation: Operation) -> Operation:
    pending = PendingBackup.from_data(operation.data["pending"])
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
            return _end(deps, operation, "failed", error=error.detail, backup_id=error.backup_id)
        return _end(deps, operation, "succeeded", backup_id=backup_id)
    if elapsed >= settings.backup_timeout_s:
        return _end(deps, operation, "failed", error="timeout", backup_id=outcome.backup_id)
    return _commit(
        deps,
        operation,
        op_status=outcome.status or operation.data.get("op_status", ""),
        unreachable=outcome.error,
        elapsed_s=elapsed,
        due_at=_due(deps),
    )


STEPS = {"starting": _step_start, "backing_up": _step_follow}


def _due(deps: Deps) -> str:
    return (deps.clock.now() + timedelta(seconds=deps.config.backups.poll_interval_s)).isoformat()


def _commit(deps: Deps, operation: Operation, state: str | None = None, **data: Any) -> Operation:
    now = deps.clock.now()
    fields: dict[str, Any] = {"data": {**operation.data, **data}}
    if state is not None:
        fields["state"] = state
        if state in FINAL_STATES:
            fields["finished_at"] = now
    updated = deps.store.update_operation(operation.id, now, **fields)
    refresh(deps, operation.id)
    return updated


def _end(deps: Deps, operation: Operation, state: str, **data: Any) -> Operation:
    started = operation.created_at
    total = (deps.clock.now() - started).total_seconds()
    deps.store.add_event(operation.id, deps.clock.now(), state, actor=BOT_ACTOR)
    return _commit(deps, operation, state, due_at=None, total_s=total, **data)


# -- approval, expiry, crashes ----------------------------------------------------------------


def decided(operation: Operation, approve: bool) -> Move:
    return Move(operation.id, "awaiting_approval", "starting" if approve else "rejected")


def on_decided(deps: Deps, operation: Operation, approve: bool, user: str) -> None:
    if deps.store.move_operation(decided(operation, approve), deps.clock.now()):
        refresh(deps, operation.id)


def on_expired(deps: Deps, operation: Operation) -> None:
    move = Move(operation.id, "awaiting_approval", "expired")
    if deps.store.move_operation(move, deps.clock.now()):
        deps.audit(BOT_ACTOR, "backup.expired", "expired", service=operation.service)
        refresh(deps, operation.id)


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    operation = deps.store.operation(operation_id)
    if operation is not None and operation.state not in FINAL_STATES:
        _end(deps, operation, "failed", error="internal")


# -- the card ---------------------------------------------------------------------------------


def backup_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = operation.data or {}
    approval = deps.store.approval_for(operation.id)
    pending = data.get("pending") or {}
    started = pending.get("started_at")
    elapsed = data.get("total_s")
    if elapsed is None and started:
        elapsed = (deps.clock.now() - datetime.fromisoformat(started)).total_seconds()
    return {
        "id": operation.id,
        "service": operation.service,
        "instance": data.get("instance", ""),
        "state": operation.state,
        "requested_by": operation.requested_by,
        "description": operation.reason,
        "backup_id": data.get("backup_id", ""),
        "op_status": data.get("op_status", ""),
        "unreachable": data.get("unreachable", ""),
        "elapsed_s": elapsed,
        "error": data.get("error", ""),
        "approval": approval_view(approval) if approval else None,
        "approver": asdict(who_may_approve(deps.config.approvals, Action.BACKUP)),
    }


def refresh(deps: Deps, operation_id: str) -> None:
    operation = deps.store.operation(operation_id)
    if operation is None:
        return
    message = deps.renderer.message("db_backup_card", b=backup_view(deps, operation))
    show(deps, operation_card(operation.id), operation.channel, message)
