"""What a restore shows: one live card, every step with its time, the Cloud SQL progress."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from bot.config import Action
from bot.ops.cards import OperationCard, approval_view
from bot.ops.context import Deps
from bot.policy.approvals import who_may_approve
from bot.ports import Message
from bot.store import Operation

STEP_NAMES = ("create", "restore", "runnable", "secret", "deploy", "smoke", "shift", "verify")
SQL_STEPS = {"creating": "create", "restoring": "restore", "checking": "runnable"}


def restore_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = operation.data or {}
    approval = deps.store.approvals.approval_for(operation.id)
    now = deps.clock.now()
    steps = []
    for name in STEP_NAMES:
        mark = (data.get("steps") or {}).get(name)
        steps.append(_step(name, mark, now))
    new_var = data.get("new_var") or {}
    return {
        "id": operation.id,
        "service": operation.service,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "instance": data.get("instance", ""),
        "clone": data.get("clone", ""),
        "backup": data.get("backup") or {},
        "env": data.get("env", "DATABASE_URL"),
        "secret": data.get("secret", ""),
        "secret_version": data.get("secret_version", ""),
        "new_secret": bool(data.get("new_secret")),
        "new_var": {"secret": new_var.get("secret", ""), "version": new_var.get("version", "")},
        "old_revision": operation.from_revision,
        "new_revision": operation.to_revision,
        "steps": steps,
        "sql_status": data.get("sql_status", ""),
        "instance_state": data.get("instance_state", ""),
        "unreachable": data.get("unreachable", ""),
        "last": data.get("last"),
        "verified": data.get("verified"),
        "outcome": data.get("outcome") or {},
        "going_back_failed": data.get("going_back_failed", ""),
        "yielded": data.get("yielded") or {},
        "waiting_for": data.get("waiting_for") or {},
        "rebuilt": data.get("rebuilt") or {},
        "copied": data.get("copied") or {},
        "approval": approval_view(approval) if approval else None,
        "approver": asdict(who_may_approve(deps.config.approvals, Action.RESTORE)),
        "can_go_back": operation.state in ("judging", "succeeded") and bool(operation.to_revision),
        "thresholds": deps.config.thresholds.model_dump(),
    }


def _step(name: str, mark: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    if not mark:
        return {"name": name, "status": "pending", "s": None, "note": ""}
    started = datetime.fromisoformat(mark["started"])
    ended = datetime.fromisoformat(mark["ended"]) if mark.get("ended") else now
    return {
        "name": name,
        "status": mark["status"],
        "s": (ended - started).total_seconds(),
        "at": started,
        "note": str(mark.get("note", "")),
    }


def restore_card(deps: Deps, operation: Operation) -> Message:
    return deps.renderer.message("db_restore_card", r=restore_view(deps, operation))


CARD = OperationCard(restore_card)
refresh = CARD.refresh
