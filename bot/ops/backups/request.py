"""`/ops backup`: authorize and record an on-demand backup (nothing is started before the
record)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Action
from bot.ops.approvals import request_approval
from bot.ops.backups.states import KIND, RUNNING_STATES, BackupData
from bot.ops.backups.take import default_description
from bot.ops.backups.target import Database, authorize_database
from bot.ops.backups.view import refresh
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.policy.approvals import Verdict
from bot.store import Operation

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
    operation = deps.store.operations.create_operation(
        now,
        kind=KIND,
        service=database.service.name,
        requested_by=request.user,
        channel=request.channel,
        reason=description,
        emergency=False,
        state=state,
        data=BackupData(instance=database.instance, project=database.project).stored(),
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
    return deps.store.operations.operation(operation.id) or operation


def _running_on(deps: Deps, service: str) -> bool:
    return any(
        o.kind == KIND and o.service == service and o.state in RUNNING_STATES
        for o in deps.store.operations.unfinished_operations()
    )


def _refuse(deps: Deps, request: BackupRequest, service: str, why: str) -> None:
    deps.audit(request.user, "backup.refused", "refused", service=service, why=why)
