"""The way out offered is one that can be taken (issue 20): a rollback past a destructive
migration offers only what is possible now, names who takes it, and the order."""

from __future__ import annotations

from bot.sandbox.console import Sandbox
from tests.helpers import run

IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"
FLAG = "FEATURE_FLAG_NEW_SCHEMA"


def released_with_a_destructive_migration(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy wa-backend {IMAGE} --migration")
    run(box, f"submit flag={FLAG} ALTER TABLE reservas DROP COLUMN fecha;", "wait 3m")
    run(box, "as luis", "click Approve migration", "wait 6m", "wait 6m")
    out = run(box, "click Approve 100%", "wait 7m")
    assert "Released" in out, out


def ways_out(card: str) -> str:
    return next(line for line in card.splitlines() if "ways out" in line)


def test_a_flag_already_off_is_not_offered_as_the_way_out(sandbox: Sandbox) -> None:
    released_with_a_destructive_migration(sandbox)
    card = run(sandbox, "as ana", "/rollback wa-backend errors after v1.3.0")
    assert "Not an emergency rollback" in card
    line = ways_out(card)
    assert f"/flag wa-backend {FLAG} off" not in card
    assert "changes nothing" in line and "tech lead other than @ana" in line
    assert "*approves*" in line and "*rejects*" in line


def test_a_flag_that_is_on_is_offered_after_the_request_that_holds_the_service(
    sandbox: Sandbox,
) -> None:
    released_with_a_destructive_migration(sandbox)
    run(sandbox, "as marta", f"/flag wa-backend {FLAG} on the new schema is ready", "wait 9m")
    card = run(sandbox, "as ana", "/rollback wa-backend wa-backend-00003 errors")
    line = ways_out(card)
    assert line.index("*rejects*") < line.index(f"`/flag wa-backend {FLAG} off`"), line
    assert "a senior developer or a tech lead turns the feature flag off" in line
    # and the order works: a tech lead rejects, then the senior developer's flip is not busy
    run(sandbox, "as luis", "click Reject")
    out = run(sandbox, "as marta", f"/flag wa-backend {FLAG} off back to the old schema")
    assert "busy" not in out, out
