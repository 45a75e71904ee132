"""/ops check, the procedure's acknowledgements and the production release gate, end to end:
Bolt over HTTP, the real run_v2 client and the probe against the emulators, Slack's emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.config import Config
from bot.ports import ServiceRef, TrafficTarget
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from bot.store import Operation
from tests.conftest import sandbox_config
from tests.helpers import run, wait_until

SERVICE, STAGING = "wa-backend", "wa-backend-staging"
BLUE = "wa-backend-00003"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"
OVERRIDE = "Release anyway (tech lead)"


def gated_config(**readiness: object) -> Config:
    """The shipped app.yaml with the gate on, and a runbook reviewed ten days ago (today is
    whatever day the test runs)."""
    config = sandbox_config()
    settings = config.readiness.model_copy(update={"block_production": True, **readiness})
    reviewed = (datetime.now(UTC).date() - timedelta(days=10)).isoformat()
    dr = config.disaster_recovery.model_copy(update={"reviewed": reviewed})
    return config.model_copy(update={"readiness": settings, "disaster_recovery": dr})


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox(gated_config(), retry_deadline_s=1.5)
    try:
        yield sandbox
    finally:
        sandbox.close()


def line_of(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if f"*{name}*" in line)


def releases(box: Sandbox) -> list[Operation]:
    with box.runtime.deps.store.session() as session:
        return list(session.scalars(select(Operation).where(Operation.kind == "release")))


def audit(box: Sandbox, action: str) -> list[tuple[str, str, dict[str, object]]]:
    rows = box.runtime.deps.store.journal.audit()
    return [(r.actor, r.outcome, r.detail) for r in rows if r.action == action]


def reseed(box: Sandbox, env: dict[str, object]) -> None:
    """wa-backend's three revisions again, each with ``env``."""
    revisions = [
        {"name": f"{SERVICE}-0000{n}", "image": f"img:{n}", "age_s": (4 - n) * 3600, "env": env}
        for n in (1, 2, 3)
    ]
    box.emulator.cloudrun.seed_service("runback-sandbox", "us-central1", SERVICE, revisions)


# -- /ops check ------------------------------------------------------------------------------


def test_check_shows_every_item_with_its_evidence(box: Sandbox) -> None:
    out = run(box, "as luis", f"/ops check {SERVICE}")
    assert line_of(out, "Blue is the last release").startswith("⚠️")  # nothing done yet
    assert "no revision older" not in out
    assert line_of(out, "Earlier revisions kept").startswith("✅")
    assert "a rollback would go to `wa-backend-00002`" in out
    assert line_of(out, "Secrets in Secret Manager").startswith("✅")
    assert "from Secret Manager: `DATABASE_URL`" in out
    assert line_of(out, "Feature flags answer").startswith("✅")
    backup = line_of(out, "Recent backup")  # the seed's automated daily backup, 6 hours old
    assert backup.startswith("✅ *Recent backup* — newest backup") and "6.0 h old" in backup
    assert line_of(out, "Disaster-recovery runbook").startswith("✅")
    assert line_of(out, "Team knows the procedure").startswith("❌")
    assert line_of(out, "Last rollback drill").startswith("❌")
    assert line_of(out, "Health path reachable").startswith("✅")
    assert "❌ 2 item(s) to fix" in out
    assert box.emulator.router.calls.list("service.config_flags"), "GET /config/flags was asked"


def test_check_refuses_an_unknown_service_and_bad_input(box: Sandbox) -> None:
    assert "I don't manage a service called `nope`" in run(box, "/ops check nope")
    assert "Usage: `/ops check SERVICE`" in run(box, "/ops check")


def test_plain_credentials_differing_flags_and_a_reserved_health_path_fail(box: Sandbox) -> None:
    reseed(box, {"DB_PASSWORD": "hunter2", "FEATURE_FLAG_NEW_CHECKOUT": "true", "LOG": "info"})
    box.emulator.cloudrun.set_config_flags(BLUE, {"NEW_CHECKOUT": False})
    services = tuple(
        s.model_copy(update={"health_path": "/healthz"}) if s.name == SERVICE else s
        for s in box.config.services
    )
    box.runtime.deps.config = box.config.model_copy(update={"services": services})
    out = run(box, f"/ops check {SERVICE}")
    assert line_of(out, "Secrets in Secret Manager").startswith("❌")
    assert "`DB_PASSWORD`" in out and "hunter2" not in out
    assert "`NEW_CHECKOUT` env on, service off" in line_of(out, "Feature flags answer")
    assert line_of(out, "Feature flags answer").startswith("❌")
    health = line_of(out, "Health path reachable")
    assert health.startswith("❌") and "reserved by Cloud Run" in health
    assert not box.emulator.router.calls.list("service.frontend"), "decided without a request"


def test_evidence_not_in_by_the_deadline_is_a_warning_never_a_pass() -> None:
    sandbox = Sandbox(gated_config(deadline_s=0.5), retry_deadline_s=1.5)
    try:
        sandbox.emulator.router.faults.add(
            Fault("service.config_flags", None, delay_ms=3000, times=None)
        )
        started = time.monotonic()
        out = run(sandbox, f"/ops check {SERVICE}")
        flags = line_of(out, "Feature flags answer")
        assert flags.startswith("⚠️") and "not gathered within 0.5 s" in flags
        assert line_of(out, "Earlier revisions kept").startswith("✅"), "the rest is in"
        assert time.monotonic() - started < 3.0, "the answer did not wait for the slow item"
    finally:
        sandbox.close()


def test_blue_follows_runbacks_last_change_and_spots_a_move_outside_it(box: Sandbox) -> None:
    run(box, "as ana", "/rollback wa-backend checkout errors")
    out = run(box, f"/ops check {SERVICE}")
    assert line_of(out, "Blue is the last release").startswith("✅")
    assert "put there by Runback's last rollback" in out
    cloudrun = box.runtime.deps.cloudrun
    ref = ServiceRef("runback-sandbox", "us-central1", SERVICE)
    state = cloudrun.get_service(ref)
    cloudrun.wait_operation(
        cloudrun.start_traffic_update(ref, [TrafficTarget(BLUE, 100)], state.etag), 30
    )
    out = run(box, f"/ops check {SERVICE}")
    blue = line_of(out, "Blue is the last release")
    assert blue.startswith("❌") and "moved outside Runback" in blue


# -- the procedure and who read it -----------------------------------------------------------


def test_acknowledgements_are_counted_per_role_once_each(box: Sandbox) -> None:
    out = run(box, "as luis", "/ops procedure")
    assert "on-call engineer 0/1 · tech lead 0/2" in out
    assert "I've read it" in out
    run(box, "click I've read it", "as ana", "click I've read it", "as eve", "click I've read it")
    out = run(box, "as ana", "click I've read it")
    assert "You had already said you read it" in out
    deps = box.runtime.deps
    from bot.ops.procedure import procedure_version

    version = procedure_version(deps)
    assert deps.store.procedure.acknowledgers(version) == {"U0LUIS", "U0ANA", "U0EVE"}
    assert len(audit(box, "procedure.acknowledged")) == 3, "once per person"
    card = [m for m in box.emulator.slack.messages() if "Read by" in json.dumps(m["blocks"])]
    assert "on-call engineer 1/1 (<@U0ANA>) · tech lead 1/2 (<@U0LUIS>)" in json.dumps(
        card[-1]["blocks"], ensure_ascii=False
    )
    line = line_of(run(box, f"/ops check {SERVICE}"), "Team knows the procedure")
    assert line.startswith("⚠️") and "1/1 on-call engineer, 1/2 tech lead" in line
    run(box, "as sofia", "click I've read it")
    line = line_of(run(box, f"/ops check {SERVICE}"), "Team knows the procedure")
    assert line.startswith("✅") and "2/2 tech lead" in line


# -- the production release gate -------------------------------------------------------------


def test_a_failing_checklist_blocks_a_production_release_until_a_tech_lead_overrides(
    box: Sandbox,
) -> None:
    out = run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")
    assert "did not start: the rollback-readiness checklist has a ❌" in out
    assert "❌ *Last rollback drill*" in out and OVERRIDE in out
    assert releases(box) == [] and not box.emulator.router.calls.list("run.services.patch")
    assert [(a, o) for a, o, _ in audit(box, "release.blocked")] == [("U0MARTA", "refused")]

    out = run(box, f"click {OVERRIDE}")  # a senior developer may not
    assert "Only a *tech lead* may release past a failing rollback-readiness checklist" in out
    assert releases(box) == []
    assert [(a, o) for a, o, _ in audit(box, "release.readiness_override")] == [
        ("U0MARTA", "refused")
    ]

    out = run(box, "as luis", f"click {OVERRIDE}")
    assert "Released past the checklist by @luis" in out
    (operation,) = releases(box)
    assert operation.requested_by == "U0MARTA"
    assert operation.data["readiness"]["override_by"] == "U0LUIS"
    assert operation.data["readiness"]["failures"] == 2
    overrides = [d for a, o, d in audit(box, "release.readiness_override") if o == "ok"]
    assert overrides == [
        {"image": IMAGE, "failing": ["acknowledged", "drill"], "requester": "U0MARTA"}
    ]
    card = box.emulator.slack.message(operation.channel, operation.message_ts)
    text = json.dumps(card["blocks"], ensure_ascii=False)
    assert "released anyway by <@U0LUIS> (tech lead override)" in text
    assert "❌ *Last rollback drill*" in text
    with pytest.raises(Exception, match="no button"):
        run(box, f"click {OVERRIDE}")  # the blocked message was replaced: no second release


def test_staging_releases_are_not_blocked(box: Sandbox) -> None:
    run(box, "as pablo", f"/deploy {STAGING} us-docker.pkg.dev/runback-sandbox/apps/x:2")
    (operation,) = releases(box)
    assert operation.service == STAGING and operation.data["readiness"] is None
    assert audit(box, "release.blocked") == []


def test_a_checklist_without_a_fail_lets_the_release_go_and_shows_on_its_card(
    box: Sandbox,
) -> None:
    run(box, "as luis", "/ops procedure", "click I've read it", "as ana", "click I've read it")
    run(box, "as pablo", "/ops drill")
    store = box.runtime.deps.store
    wait_until(
        lambda: (
            [d.outcome for d in store.drills.drills(outcomes=("passed", "failed"))] == ["passed"]
        ),
        "the drill",
    )
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")
    (operation,) = releases(box)
    readiness = operation.data["readiness"]
    assert (readiness["failures"], readiness["warnings"]) == (0, 2)  # blue, sofia
    card = box.emulator.slack.message(operation.channel, operation.message_ts)
    assert "*Rollback readiness:* ⚠️ 2 to look at" in json.dumps(card["blocks"], ensure_ascii=False)
