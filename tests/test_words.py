"""Words that are true (issue 20): dialogs say what the button does, thresholds carry units,
the migration check explains an INSERT as an INSERT. Through the real bot in the sandbox."""

from __future__ import annotations

import json

from bot.sandbox.console import Sandbox
from tests.helpers import run

IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"


def confirm_dialogs(box: Sandbox) -> list[dict]:
    found = []
    for message in box.emulator.slack.messages():
        for block in message.get("blocks") or []:
            for element in block.get("elements") or []:
                if isinstance(element, dict) and element.get("confirm"):
                    found.append(element | {"ts": message.get("ts")})
    return found


def test_the_restore_approval_dialog_speaks_of_a_restore_not_a_rollback(sandbox: Sandbox) -> None:
    run(sandbox, "as luis", "/ops restore wa-backend 1700000000003", "click Ask to restore")
    approve = [d for d in confirm_dialogs(sandbox) if d.get("action_id") == "db_approve"]
    assert approve, "no Approve button on the restore card"
    dialog = json.dumps(approve[-1]["confirm"], ensure_ascii=False)
    assert "roll back" not in dialog.lower() and "rollback" not in dialog.lower(), dialog
    assert "Yes, restore" in dialog
    reject = [d for d in confirm_dialogs(sandbox) if d.get("action_id") == "db_reject"][-1]
    assert "rollback" not in json.dumps(reject["confirm"]).lower()


def test_the_release_judgement_gives_its_thresholds_units(sandbox: Sandbox) -> None:
    run(sandbox, "as marta", f"/deploy wa-backend {IMAGE}")
    card = run(sandbox, "wait 6m")
    line = next(line for line in card.splitlines() if "*Last judgement*" in line)
    assert "roll back above 2000 ms, proceed below 800 ms" in line, line
