"""`/ops restore SERVICE BACKUP_ID`: check, say what will happen, then record the request.

Nothing changes until another tech lead approves: ``preview_restore`` (for the confirm dialog)
and ``request_restore`` (after the requester confirmed) read Cloud SQL and Cloud Run, and the
second records the operation, waiting for its approval, holding the service's lock.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from bot.config import Action
from bot.ops.approvals import request_approval
from bot.ops.backups.target import Database, authorize_database, cloudsql, resolve_database
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.holding import open_holding
from bot.ops.restore.endpoints import secret_check
from bot.ops.restore.states import FINAL_STATES, KIND, RestoreData, RestoredBackup
from bot.ops.restore.view import refresh
from bot.policy.databases import clone_name, is_clone_name, secret_target
from bot.policy.targets import current_revision
from bot.ports import Backup, CloudRunError, CloudSqlError, EnvVar
from bot.store import LockHolder, Operation

BACKUP_ID = re.compile(r"^[0-9]{1,20}$")
BACKUPS_SEARCHED = 100  # how far back /ops restore looks for the backup id


@dataclass(frozen=True)
class RestoreRequest:
    target: str  # SERVICE (or its instance)
    backup_id: str
    user: str
    channel: str
    clone: str = ""  # the clone's name the confirm dialog showed (kept if it is one of ours)


def preview_restore(deps: Deps, request: RestoreRequest) -> dict[str, Any]:
    """What the restore would do, checked now (raises UserError, audited, when it cannot)."""
    database = _authorized_database(deps, request)
    backup = _find_backup(deps, database, request)
    revision, var = _serving_database_var(deps, database)
    now = deps.clock.now()
    version = var.secret_version or "latest"
    uses, problem = secret_check(deps, database, var.secret, version)
    return {
        "service": database.service.name,
        "instance": database.instance,
        "backup": {
            "id": backup.id,
            "automated": backup.automated,
            "at": backup.ended or backup.started or backup.enqueued,
            "description": backup.description,
        },
        "clone": clone_name(database.instance, now, secrets.token_hex(2)),
        "uses": uses,  # the instance the service's URL names now (a clone, after a restore)
        "secret_problem": problem,  # why the restore would stop at its secret step
        "env": database.env,
        "secret": _short_secret(var.secret),
        "secret_version": version,
        "new_secret": secret_target(version) == "new_secret",
        "revision": revision,
        "approver_needed": True,
    }


def request_restore(deps: Deps, request: RestoreRequest) -> Operation:
    """Record the confirmed request, waiting for another tech lead's approval."""
    preview = preview_restore(deps, request)
    database = resolve_database(deps, request.target)
    if is_clone_name(request.clone, database.instance):
        preview["clone"] = request.clone  # what the requester was shown and confirmed
    service = database.service.name
    now = deps.clock.now()
    operation = open_holding(
        deps,
        now,
        kind=KIND,
        service=service,
        requested_by=request.user,
        channel=request.channel,
        reason="",
        emergency=False,
        state="awaiting_approval",
        from_revision=preview["revision"],
        to_revision="",
        data=RestoreData(
            project=database.project,
            instance=database.instance,
            backup=RestoredBackup(**{**preview["backup"], "at": _iso(preview["backup"]["at"])}),
            clone=preview["clone"],
            env=database.env,
            secret=preview["secret"],
            secret_version=preview["secret_version"],
            new_secret=preview["new_secret"],
        ).stored(),
    )
    request_approval(deps, operation.id, Action.RESTORE, request.user)
    deps.audit(
        request.user,
        "restore.requested",
        "pending",
        service=service,
        revision=preview["revision"],
        operation_id=operation.id,
        instance=database.instance,
        backup_id=request.backup_id,
        clone=preview["clone"],
    )
    refresh(deps, operation.id)
    return deps.store.operations.operation(operation.id) or operation


def _authorized_database(deps: Deps, request: RestoreRequest) -> Database:
    database, _ = authorize_database(
        deps,
        Action.RESTORE,
        request.target,
        request.user,
        request.channel,
        lambda service, why: _refuse(deps, request, service, why),
    )
    holder = deps.store.operations.lock_holder(database.service.name) or _unfinished_restore(
        deps, database
    )
    if holder is not None:
        _refuse(deps, request, database.service.name, "busy")
        raise UserError("error.busy", service=database.service.name, holder=holder)
    if not BACKUP_ID.fullmatch(request.backup_id):
        _refuse(deps, request, database.service.name, "bad_backup_id")
        raise UserError("error.db.bad_backup_id", backup_id=request.backup_id)
    return database


def _unfinished_restore(deps: Deps, database: Database) -> LockHolder | None:
    """A restore that stepped aside for an on-call rollback holds no lock, and still runs."""
    found = deps.store.operations.latest_operation(database.service.name, KIND)
    if found is None or found.state in FINAL_STATES or found.state == "awaiting_approval":
        return None
    return LockHolder(
        found.id, found.kind, found.state, found.requested_by, found.to_revision, found.lease_until
    )


def _find_backup(deps: Deps, database: Database, request: RestoreRequest) -> Backup:
    try:
        backups = cloudsql(deps).list_backups(database.project, database.instance, BACKUPS_SEARCHED)
    except CloudSqlError as error:
        raise UserError(
            "error.db.cloudsql_unavailable",
            instance=database.instance,
            reason=error.reason,
            detail=error.detail or error.reason,
        ) from None
    backup = next((b for b in backups if b.id == request.backup_id), None)
    if backup is None or not backup.successful:
        _refuse(deps, request, database.service.name, "no_such_backup")
        recent = [b.id for b in backups if b.successful][:5]
        raise UserError(
            "error.db.no_such_backup",
            backup_id=request.backup_id,
            instance=database.instance,
            status=backup.status if backup else "",
            recent=recent,
        )
    return backup


def _serving_database_var(deps: Deps, database: Database) -> tuple[str, EnvVar]:
    """The serving revision and its DATABASE_URL variable, which must come from a secret."""
    ref = deps.service_ref(database.service)
    try:
        state = deps.cloudrun.get_service(ref)
        blue = current_revision(state.serving())
        revision = deps.cloudrun.get_revision(ref, blue) if blue else None
    except CloudRunError as error:
        raise UserError(
            "error.cloudrun_unavailable",
            service=database.service.name,
            detail=error.detail or error.reason,
        ) from None
    if revision is None:
        raise UserError(
            "error.target.not_serving", service=database.service.name, revision="", recent=[]
        )
    var = next((v for v in revision.env if v.name == database.env), None)
    if var is None or not var.from_secret:
        raise UserError(
            "error.db.not_from_secret",
            service=database.service.name,
            revision=revision.name,
            env=database.env,
            plain=var is not None,
        )
    return revision.name, var


def _short_secret(secret: str) -> str:
    """``projects/P/secrets/S`` or ``S`` -> ``S``."""
    return secret.rsplit("/", 1)[-1]


def _refuse(deps: Deps, request: RestoreRequest, service: str, why: str) -> None:
    deps.audit(
        request.user,
        "restore.refused",
        "refused",
        service=service,
        why=why,
        backup_id=request.backup_id[:40],
    )


def _iso(moment: Any) -> str:
    return moment.isoformat() if moment is not None else ""
