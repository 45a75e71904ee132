"""The postmortem draft's records are true (issue 20): "After mitigation" is filled once the
numbers arrive, "At trigger" when the automatic rollback was blocked although the numbers were
judged, and the timeline speaks in words, not raw values. The real bot in the sandbox."""

from __future__ import annotations

from bot.sandbox.console import Sandbox
from tests.helpers import run


def drafts(box: Sandbox) -> list[str]:
    return [f["content"] for f in box.emulator.slack.files() if f["name"].startswith("postmortem-")]


def metrics_row(draft: str, name: str) -> list[str]:
    row = next(line for line in draft.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_after_mitigation_is_filled_when_the_numbers_arrive(sandbox: Sandbox) -> None:
    run(sandbox, "set wa-backend-00003 error_rate=0.07", "wait 9m", "alert wa-backend")
    assert len(drafts(sandbox)) == 1  # at mitigation: no minute after it is visible yet
    shown = run(sandbox, "wait 9m")
    assert "updated" in shown
    latest = drafts(sandbox)[-1]
    _, at_trigger, after, _ = metrics_row(latest, "Requests")
    # above the rollback threshold the judgement is the newest visible minute (issue 17)
    assert at_trigger == "1200" and after not in ("0", "_unknown_"), latest
    _, _, rate_after, _ = metrics_row(latest, "Error rate")
    assert rate_after == "0%"
    run(sandbox, "wait 9m")
    assert len(drafts(sandbox)) == 2, "posted again exactly once"


def test_a_blocked_automatic_rollback_keeps_the_numbers_for_the_draft(sandbox: Sandbox) -> None:
    run(sandbox, "as ana", "/rollback wa-backend errors after v1.2.0")
    run(sandbox, "/rollback wa-backend wa-backend-00001 still failing")
    run(sandbox, "/rollback wa-backend wa-backend-00003 false alarm")
    run(sandbox, "set wa-backend-00003 error_rate=0.07", "wait 9m", "alert wa-backend")
    run(sandbox, "/rollback wa-backend wa-backend-00002 by hand")
    (draft,) = drafts(sandbox)
    _, at_trigger, _, _ = metrics_row(draft, "Requests")
    assert at_trigger == "1200", draft
    timeline = draft.split("## Timeline")[1].split("## Metrics")[0]
    assert "emergency True" not in timeline and "error.target" not in timeline, timeline
    assert "Automatic rollback not started" in timeline
    assert "rolled back from, so Runback did not pick one by itself" in timeline
    assert "emergency (on-call, self-approved)" in timeline
