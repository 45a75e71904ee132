"""/ops drills: the drill history, and its log as a text file like the runbook's
ROLLBACK_TEST_LOG.txt (one line per drill, newest last, then each drill's steps)."""

from __future__ import annotations

from typing import Any

from bot.ops.cards import share_file
from bot.ops.context import Deps
from bot.ports import Message
from bot.store import DrillRecord

SHOWN = ("running", "passed", "failed", "missed")
LOG_FILE = "ROLLBACK_TEST_LOG.txt"


def record_view(record: DrillRecord) -> dict[str, Any]:
    detail = record.detail or {}
    return {
        "id": record.id,
        "service": record.service,
        "trigger": record.trigger,
        "requested_by": record.requested_by,
        "outcome": record.outcome,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "time_to_safe_s": record.time_to_safe_s,
        "operation_id": record.operation_id,
        "code": (detail.get("outcome") or {}).get("code", ""),
        "revision": detail.get("revision", ""),
        "blue": detail.get("blue", ""),
        "due": detail.get("due", ""),
        "log": detail.get("log", []),
    }


def drills_message(deps: Deps, channel: str, limit: int = 10, post: bool = False) -> Message:
    """The newest drills, answered to the asker alone; with ``post`` the log also goes to
    ``channel`` as a file, for everyone there."""
    records = deps.store.drills.drills(outcomes=SHOWN, limit=max(limit, 100))
    views = [record_view(r) for r in records]
    if views and post:
        share_file(
            deps,
            channel,
            LOG_FILE,
            log_text(deps, views),
            deps.renderer.text("drill.log.title"),
            deps.renderer.text("drill.log.comment", count=len(views)),
        )
    return deps.renderer.message("drills", drills=views[:limit], total=len(views), posted=post)


def log_text(deps: Deps, views: list[dict[str, Any]]) -> str:
    lines = [deps.renderer.text("drill.log.line", r=view) for view in reversed(views)]
    lines.append("")
    for view in reversed(views):
        for entry in view["log"]:
            lines.append(deps.renderer.text("drill.log.step", r=view, e=entry))
    return "\n".join(lines).rstrip() + "\n"
