"""What a release shows: its live card, posts in the card's thread, the chart at the end."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from bot.config import Action
from bot.ops.cards import OperationCard, announce, approval_view, operation_card, share_file
from bot.ops.context import Deps
from bot.ops.release.states import FINAL_STATES, ReleaseData
from bot.policy.approvals import who_may_approve
from bot.ports import Message
from bot.store import Operation

log = logging.getLogger("runback.release")
MAX_SHOWN = 8  # statements of a migration on the card (the deciding ones first)


def release_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = ReleaseData.of(operation)
    approval = deps.store.approvals.approval_for(operation.id)
    return {
        "id": operation.id,
        "service": operation.service,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "image": data.image,
        "blue": operation.from_revision,
        "blue_image": data.blue_image,
        "green": operation.to_revision,
        "staging": data.staging,
        "steps": data.percents,
        "step": data.step,
        "percent": data.percent,
        "last": data.judgements[-1] if data.judgements else None,
        # for Monitoring's next minute: nothing new to judge
        "waiting": data.waiting.model_dump() if data.waiting else None,
        "outcome": data.outcome or {},
        "pause_reason": data.pause_reason,
        "paused_by": data.paused_by,
        "seen": data.seen or {},
        "due_at": datetime.fromisoformat(data.due_at) if data.due_at else None,
        "approval": approval_view(approval) if approval else None,
        "thresholds": deps.config.thresholds.model_dump(),
        "window_minutes": deps.config.thresholds.observe_minutes,
        "buttons": _buttons(operation.state, data),
        "warnings": data.warnings,
        "confirmed": data.confirmed,
        "approver": asdict(who_may_approve(deps.config.approvals, _awaited(data))),
        "approval_action": str(_awaited(data)),
        "awaiting": data.awaiting or "",
        "migration": _migration_view(data),
        "backup": data.backup.model_dump() if data.backup else None,
        "readiness": data.readiness,
    }


def _awaited(data: ReleaseData) -> Action:
    """The approval the release asks (or will ask) for next."""
    if data.guarded and not data.migration_approved_by:
        return Action.DESTRUCTIVE_MIGRATION
    return Action.FULL_TRAFFIC


def _migration_view(data: ReleaseData) -> dict[str, Any] | None:
    """The migration the release carries, with the statements that decide first."""
    if data.migration is None:
        return None
    statements = data.migration.statements
    order = {"unknown": 0, "destructive": 1, "additive": 2}
    shown = sorted(statements, key=lambda s: order.get(s.get("verdict", ""), 3))[:MAX_SHOWN]
    return {
        **data.migration.model_dump(),
        "shown": sorted(shown, key=lambda s: s.get("line") or 0),
        "hidden": max(len(statements) - MAX_SHOWN, 0),
        "approved_by": data.migration_approved_by,
    }


def _buttons(state: str, data: ReleaseData) -> list[str]:
    if state in FINAL_STATES or state == "rolling_back":
        return []
    buttons = []
    if state == "awaiting_approval" and data.awaiting == "migration":
        buttons += ["approve_migration", "reject"]
    elif state == "awaiting_approval":
        buttons += ["approve_full", "reject"]
    if state == "needs_human":
        buttons.append("proceed")
    if state in ("judging", "shifting"):
        buttons.append("pause")
    if state == "paused":
        buttons.append("resume")
    return [*buttons, "roll_back"]


def release_card(deps: Deps, operation: Operation) -> Message:
    return deps.renderer.message("release_card", rel=release_view(deps, operation))


CARD = OperationCard(release_card)
refresh = CARD.refresh


def post_in_thread(deps: Deps, operation: Operation, message: Message) -> None:
    announce(deps, operation.channel, message, thread_of=operation_card(operation.id))


def post_chart(deps: Deps, operation: Operation) -> None:
    """The release's error rate and P95 over time, with thresholds and steps, in its thread."""
    data = ReleaseData.of(operation)
    if not data.judgements:
        return
    try:
        from bot.ops.release_chart import render_release_chart

        points = [{**j, "at": datetime.fromisoformat(j["at"])} for j in data.judgements]
        steps = [{**h.model_dump(), "at": datetime.fromisoformat(h.at)} for h in data.history]
        labels = {
            key: deps.renderer.text(f"release.chart.{key}")
            for key in ("error_rate", "p95", "traffic", "rollback", "time", "no_data")
        }
        title = deps.renderer.text(
            "release.chart.title", service=operation.service, revision=operation.to_revision
        )
        png = render_release_chart(
            points, steps, deps.config.thresholds.model_dump(), title, labels
        )
        share_file(
            deps,
            operation.channel,
            f"release-{operation.service}-{operation.id}.png",
            png,
            title,
            deps.renderer.text("release.chart.comment"),
            thread_of=operation_card(operation.id),
        )
    except Exception:
        log.exception("could not post the chart of release %s", operation.id)
