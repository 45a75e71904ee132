"""What a restore shows: one live card, every step with its time, the Cloud SQL progress."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from bot.config import Action
from bot.ops.cards import OperationCard, approval_view
from bot.ops.context import Deps
from bot.ops.restore.states import RestoreData, StepMark
from bot.policy.approvals import who_may_approve
from bot.ports import Message
from bot.store import Operation

STEP_NAMES = ("create", "restore", "runnable", "secret", "deploy", "smoke", "shift", "verify")
SQL_STEPS = {"creating": "create", "restoring": "restore", "checking": "runnable"}


def restore_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = RestoreData.of(operation)
    approval = deps.store.approvals.approval_for(operation.id)
    now = deps.clock.now()
    new_var = data.new_var
    return {
        "id": operation.id,
        "service": operation.service,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "instance": data.instance,
        "clone": data.clone,
        "backup": data.backup.model_dump(),
        "env": data.env,
        "secret": data.secret,
        "secret_version": data.secret_version,
        "new_secret": data.new_secret,
        "new_var": {
            "secret": new_var.secret if new_var else "",
            "version": new_var.version if new_var else "",
        },
        "old_revision": operation.from_revision,
        "new_revision": operation.to_revision,
        "steps": [_step(name, data.steps.get(name), now) for name in STEP_NAMES],
        "sql_status": data.sql_status,
        "instance_state": data.instance_state,
        "unreachable": data.unreachable,
        "last": data.last,
        "waiting": data.waiting.model_dump() if data.waiting else None,
        "verified": data.verified,
        "outcome": _dumped(data.outcome),
        "going_back_failed": data.going_back_failed,
        "yielded": _dumped(data.yielded),
        "waiting_for": _dumped(data.waiting_for),
        "rebuilt": _dumped(data.rebuilt),
        "copied": _dumped(data.copied),
        "approval": approval_view(approval) if approval else None,
        "approver": asdict(who_may_approve(deps.config.approvals, Action.RESTORE)),
        "can_go_back": operation.state in ("judging", "succeeded") and bool(operation.to_revision),
        "thresholds": deps.config.thresholds.model_dump(),
    }


def _dumped(part: BaseModel | None) -> dict[str, Any]:
    return part.model_dump() if part is not None else {}


def _step(name: str, mark: StepMark | None, now: datetime) -> dict[str, Any]:
    if mark is None or not mark.started:
        return {"name": name, "status": "pending", "s": None, "note": ""}
    started = datetime.fromisoformat(mark.started)
    ended = datetime.fromisoformat(mark.ended) if mark.ended else now
    return {
        "name": name,
        "status": mark.status,
        "s": (ended - started).total_seconds(),
        "at": started,
        "note": str((mark.model_extra or {}).get("note", "")),
    }


def restore_card(deps: Deps, operation: Operation) -> Message:
    return deps.renderer.message("db_restore_card", r=restore_view(deps, operation))


CARD = OperationCard(restore_card)
refresh = CARD.refresh
