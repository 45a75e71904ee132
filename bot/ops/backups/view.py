"""What an on-demand backup shows: its one live card."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from bot.config import Action
from bot.ops.backups.states import BackupData
from bot.ops.cards import OperationCard, approval_view
from bot.ops.context import Deps
from bot.policy.approvals import who_may_approve
from bot.ports import Message
from bot.store import Operation


def backup_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = BackupData.of(operation)
    approval = deps.store.approvals.approval_for(operation.id)
    elapsed = data.total_s
    if elapsed is None and data.pending is not None:
        started = datetime.fromisoformat(data.pending.started_at)
        elapsed = (deps.clock.now() - started).total_seconds()
    return {
        "id": operation.id,
        "service": operation.service,
        "instance": data.instance,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "description": operation.reason,
        "backup_id": data.backup_id,
        "op_status": data.op_status,
        "unreachable": data.unreachable,
        "elapsed_s": elapsed,
        "error": data.error,
        "approval": approval_view(approval) if approval else None,
        "approver": asdict(who_may_approve(deps.config.approvals, Action.BACKUP)),
    }


def backup_card(deps: Deps, operation: Operation) -> Message:
    return deps.renderer.message("db_backup_card", b=backup_view(deps, operation))


CARD = OperationCard(backup_card)
refresh = CARD.refresh
