"""What a release shows: its live card, posts in the card's thread, the chart at the end."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from bot.config import Action
from bot.ops.cards import announce, approval_view, operation_card, share_file, show
from bot.ops.context import Deps
from bot.ops.release.states import FINAL_STATES
from bot.policy.approvals import who_may_approve
from bot.ports import Message
from bot.store import Operation

log = logging.getLogger("runback.release")


def release_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = operation.data or {}
    approval = deps.store.approval_for(operation.id)
    step = data.get("step", -1)
    steps = data.get("steps", [])
    return {
        "id": operation.id,
        "service": operation.service,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "image": data.get("image", ""),
        "blue": operation.from_revision,
        "blue_image": data.get("blue_image", ""),
        "green": operation.to_revision,
        "staging": data.get("staging", False),
        "steps": steps,
        "step": step,
        "percent": steps[step] if 0 <= step < len(steps) else 0,
        "last": (data.get("judgements") or [None])[-1],
        "outcome": data.get("outcome") or {},
        "pause_reason": data.get("pause_reason"),
        "paused_by": data.get("paused_by", ""),
        "seen": data.get("seen") or {},
        "due_at": datetime.fromisoformat(data["due_at"]) if data.get("due_at") else None,
        "approval": approval_view(approval) if approval else None,
        "thresholds": deps.config.thresholds.model_dump(),
        "window_minutes": deps.config.thresholds.observe_minutes,
        "buttons": _buttons(operation),
        "warnings": data.get("warnings") or [],
        "confirmed": bool(data.get("confirmed")),
        "readiness": data.get("readiness"),
        "approver": asdict(who_may_approve(deps.config.approvals, Action.FULL_TRAFFIC)),
    }


def _buttons(operation: Operation) -> list[str]:
    state = operation.state
    if state in FINAL_STATES or state == "rolling_back":
        return []
    buttons = []
    if state == "awaiting_approval":
        buttons += ["approve_full", "reject"]
    if state == "needs_human":
        buttons.append("proceed")
    if state in ("judging", "shifting"):
        buttons.append("pause")
    if state == "paused":
        buttons.append("resume")
    return [*buttons, "roll_back"]


def refresh(deps: Deps, operation_id: str) -> None:
    operation = deps.store.operation(operation_id)
    if operation is None:
        return
    message = deps.renderer.message("release_card", rel=release_view(deps, operation))
    show(deps, operation_card(operation.id), operation.channel, message)


def post_in_thread(deps: Deps, operation: Operation, message: Message) -> None:
    announce(deps, operation.channel, message, thread_of=operation_card(operation.id))


def post_chart(deps: Deps, operation: Operation) -> None:
    """The release's error rate and P95 over time, with thresholds and steps, in its thread."""
    data = operation.data or {}
    if not data.get("judgements"):
        return
    try:
        from bot.ops.release_chart import render_release_chart

        points = [{**j, "at": datetime.fromisoformat(j["at"])} for j in data["judgements"]]
        steps = [{**h, "at": datetime.fromisoformat(h["at"])} for h in data["history"]]
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
