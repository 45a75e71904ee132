"""Runback's own moves are Runback's (issue 20): after a flag flip (kept or rolled back), a
restore or a drill, `/ops check` vouches for blue instead of saying that traffic was moved
outside Runback. The real bot in the sandbox, fed console lines."""

from __future__ import annotations

from bot.sandbox.console import Sandbox
from tests.helpers import run

OUTSIDE = "traffic was moved outside Runback"


def blue_line(box: Sandbox, service: str = "wa-backend") -> str:
    shown = run(box, f"/ops check {service}")
    return next(line for line in shown.splitlines() if "Blue is the last release" in line)


def rolled_back_once(box: Sandbox) -> None:
    """Runback has a record of the service: the blue it last put there."""
    run(box, "as ana", "/rollback wa-backend checkout errors")
    assert "✅" in blue_line(box)


def test_a_kept_flag_flip_is_runbacks_own_move(sandbox: Sandbox) -> None:
    rolled_back_once(sandbox)
    run(sandbox, "as marta", "/flag wa-backend NEW_CHECKOUT on the new checkout", "wait 9m")
    line = blue_line(sandbox)
    assert OUTSIDE not in line and line.startswith("✅"), line
    assert "flag flip" in line


def test_a_flag_flip_rolled_back_is_runbacks_own_move(sandbox: Sandbox) -> None:
    rolled_back_once(sandbox)
    run(sandbox, "as marta", "set new error_rate=0.2", "/flag wa-backend NEW_CHECKOUT on x")
    assert "Rolled back" in run(sandbox, "wait 6m")
    line = blue_line(sandbox)
    assert OUTSIDE not in line and line.startswith("✅"), line
    assert "`wa-backend-00002` serves 100%" in line and "flag flip" in line


def test_a_drill_is_runbacks_own_move(sandbox: Sandbox) -> None:
    run(sandbox, "as pablo", "/ops drill", "wait 5s")
    line = blue_line(sandbox, "wa-backend-staging")
    assert OUTSIDE not in line and line.startswith("✅"), line


def test_a_restore_is_runbacks_own_move(sandbox: Sandbox) -> None:
    rolled_back_once(sandbox)
    run(sandbox, "as luis", "/ops restore wa-backend 1700000000003", "click Ask to restore")
    run(sandbox, "as sofia", "click Approve", "wait 1m", "wait 5m", "wait 11m", "wait 10m")
    assert (
        sandbox.runtime.deps.store.operations.latest_operation("wa-backend", "restore").state
        == "succeeded"
    )
    line = blue_line(sandbox)
    assert OUTSIDE not in line and line.startswith("✅"), line
    assert "restore" in line
