"""``/ops migration-check``: a modal takes the SQL, the report comes back only to the asker.

The modal is opened at once with the command's trigger_id (Slack lets it live 3 s); the channel
the command came from travels in the view's private_metadata, because a view_submission carries
no channel and chat.postEphemeral needs one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App

from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.policy.migrations import MAX_SQL_CHARS
from bot.ports import Message
from bot.slack.answers import tell_later

log = logging.getLogger("runback.slack")

CALLBACK_ID = "migration_check"
DIALECTS = ("postgres", "mysql")
MAX_SHOWN = 20  # two blocks each, within Slack's 50 blocks per message


def modal_view(deps: Deps, command: dict[str, Any]) -> dict[str, Any]:
    metadata = json.dumps({"channel": command["channel_id"]})
    return deps.renderer.view("migration_modal", metadata=metadata)


def report(deps: Deps, sql: str, dialect: str) -> Message:
    from bot.policy.migrations import check_migration, worst

    findings = check_migration(sql, dialect)  # type: ignore[arg-type]
    rows: list[dict[str, Any]] = [
        {
            "index": index,
            "line": f.line,
            "statement": f.statement,
            "verdict": str(f.verdict),
            "rule": f.rule,
            "data": dict(f.data),
            "warnings": list(f.warnings),
        }
        for index, f in enumerate(findings)
    ]
    # The statements that decide come first when there are too many to show.
    order = {"unknown": 0, "destructive": 1, "additive": 2}
    shown = sorted(sorted(rows, key=lambda r: order[r["verdict"]])[:MAX_SHOWN], key=_index)
    return deps.renderer.message(
        "migration_report",
        verdict=str(worst(f.verdict for f in findings)),
        dialect=dialect,
        findings=rows,
        shown=shown,
        hidden=len(rows) - len(shown),
    )


def _index(row: dict[str, Any]) -> int:
    return int(row["index"])


def _submitted(view: dict[str, Any]) -> tuple[str, str, str | None]:
    values = (view.get("state") or {}).get("values") or {}
    sql = ((values.get("sql") or {}).get("sql") or {}).get("value") or ""
    option = ((values.get("dialect") or {}).get("dialect") or {}).get("selected_option") or {}
    dialect = str(option["value"]) if option.get("value") in DIALECTS else "postgres"
    try:
        channel = json.loads(view.get("private_metadata") or "{}").get("channel")
    except (ValueError, AttributeError):
        channel = None
    return sql, dialect, channel


def register(app: App, deps: Deps, engine: Engine) -> None:
    @app.view(CALLBACK_ID)
    @engine.tracked
    def submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        sql, dialect, channel = _submitted(view)
        if len(sql) > MAX_SQL_CHARS:  # Slack's own field holds 3,000: only a forged form
            too_long = deps.renderer.text("migration.too_long", limit=f"{MAX_SQL_CHARS:,}")
            ack(response_action="errors", errors={"sql": too_long})
            return
        ack()  # closes the modal; the report follows as an ephemeral message
        if not channel:
            log.warning("migration check submitted without a channel in private_metadata")
            return

        tell_later(engine, deps, channel, user, lambda: report(deps, sql, dialect))
