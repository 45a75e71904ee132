"""Releases that do only what was asked and say so truthfully: the registry allow-list and the
image's warnings on /deploy, Reject beside Approve 100%, who may approve on every card, the
expiry a late click shows, an on-call /rollback's reason on the release, and tags that survive
every release PATCH. Through Bolt over HTTP and the real client libraries on the emulators."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from bot.config import load_config
from bot.ops.release.states import GREEN_TAG
from bot.ops.traffic import with_other_tags
from bot.ports import ServiceRef, ServiceState, TrafficStatus, TrafficTarget
from bot.sandbox.console import Sandbox
from bot.sandbox.seed import SAMPLE_REVISIONS
from tests.conftest import REPO, sandbox_config
from tests.helpers import patches, run, serving
from tests.test_release import (
    BLUE,
    IMAGE,
    SERVICE,
    card,
    deploy,
    ephemerals,
    release,
    tags,
)

PROJECT, REGION = "runback-sandbox", "us-central1"
REGISTRY = f"us-docker.pkg.dev/{PROJECT}/apps/"


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    return sandbox


def audit(box: Sandbox, action: str) -> list:
    return [a for a in box.runtime.deps.store.journal.audit() if a.action == action]


def late_click(box: Sandbox, body: str) -> None:
    """A click on a card as it was before it changed (Slack may show a stale message)."""
    assert box.post(body).status_code == 200
    box.runtime.engine.wait_idle(timeout_s=60)


def to_awaiting_approval(box: Sandbox, user: str = "marta") -> str:
    green = deploy(box, user=user)
    run(box, "wait 6m", "wait 6m")  # Monitoring shows each step's minutes ~3 min late
    assert release(box).state == "awaiting_approval"
    return green


# -- the registry allow-list ------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "docker.io/someone/wa-backend:1.3.0",
        "nginx:1.27",
        f"us-docker.pkg.dev/{PROJECT}-evil/apps/wa-backend:1.3.0",
        "us-docker.pkg.dev.evil.example/runback-sandbox/apps/wa:1.3.0",
        f"europe-west1-docker.pkg.dev/{PROJECT}/apps/wa-backend:1.3.0",
    ],
)
def test_production_refuses_an_image_outside_its_registries(box: Sandbox, image: str) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {image}")
    note = "\n".join(ephemerals(box))
    assert "is not from a registry" in note
    assert f"`us-central1-docker.pkg.dev/{PROJECT}/…`" in note and f"`{REGISTRY[:-5]}…`" in note
    assert release(box) is None and len(patches(box)) == 0
    assert [a.detail["why"] for a in audit(box, "release.refused")] == ["registry"]


def test_the_services_own_regional_registry_is_allowed(box: Sandbox) -> None:
    image = f"us-central1-docker.pkg.dev/{PROJECT}/apps/wa-backend:1.3.0"
    run(box, "as marta", f"/deploy {SERVICE} {image}")
    assert release(box).state == "judging" and release(box).data["image"] == image


def test_staging_takes_any_registry(box: Sandbox) -> None:
    run(box, "as pablo", "/deploy wa-backend-staging docker.io/someone/wa-backend:1.3.0")
    assert release(box).state == "succeeded"


def test_registries_from_app_yaml_replace_the_default() -> None:
    config = load_config(REPO / "app.yaml")
    services = tuple(
        s.model_copy(update={"registries": ("ghcr.io/acme/",)}) if s.name == SERVICE else s
        for s in config.services
    )
    release_settings = config.release.model_copy(update={"registries": ("gcr.io/shared/",)})
    config = sandbox_config().model_copy(update={"services": services, "release": release_settings})
    box = Sandbox(config, retry_deadline_s=1.5)
    try:
        run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")  # the default no longer applies
        assert "`ghcr.io/acme/…`" in "\n".join(ephemerals(box)) and release(box) is None
        run(box, "as marta", f"/deploy {SERVICE} ghcr.io/acme/wa-backend:1.3.0")
        assert release(box).state == "judging"
    finally:
        box.close()


# -- warnings and the requester's confirmation -------------------------------------------------


@pytest.mark.parametrize(
    ("image", "warning"),
    [
        (f"{REGISTRY}wa-backend:latest", "`:latest` is a moving tag"),
        (f"{REGISTRY}wa-backend", "no tag or digest"),
    ],
)
def test_a_moving_image_in_production_needs_the_requesters_confirmation(
    box: Sandbox, image: str, warning: str
) -> None:
    output = run(box, "as marta", f"/deploy {SERVICE} {image}")
    assert warning in output and "Release anyway" in output
    assert release(box) is None and len(patches(box)) == 0, "nothing starts before the click"
    assert [a.detail["warnings"] for a in audit(box, "release.confirmation_asked")] == [
        [warning_code(warning)]
    ]

    output = run(box, "click Release anyway")
    operation = release(box)
    assert operation.requested_by == "U0MARTA" and operation.data["image"] == image
    assert serving(box) == {BLUE: 90, operation.to_revision: 10}
    assert warning in card(box) and "confirmed by <@U0MARTA>" in card(box)
    assert warning in output, "the request's answer repeats the warning"
    requested = audit(box, "release.requested")[-1]
    assert requested.detail["confirmed"] is True
    prompts = [
        m
        for m in box.emulator.slack.messages()
        if "release_confirm_deploy" in json.dumps(m["blocks"])
    ]
    assert prompts == [], "the prompt is replaced by what happened: it cannot start twice"


def warning_code(text: str) -> str:
    return "latest" if "latest" in text else "untagged"


def test_a_pinned_digest_needs_no_confirmation(box: Sandbox) -> None:
    image = f"{REGISTRY}wa-backend:latest@sha256:{'ab' * 32}"
    run(box, "as marta", f"/deploy {SERVICE} {image}")
    assert release(box).state == "judging" and "moving tag" not in card(box)


def test_latest_on_staging_is_shown_without_asking(box: Sandbox) -> None:
    output = run(box, "as pablo", f"/deploy wa-backend-staging {REGISTRY}wa-backend:latest")
    assert release(box).state == "succeeded"
    assert "`:latest` is a moving tag" in output and "`:latest` is a moving tag" in card(box)
    assert "Release anyway" not in output


def test_the_image_already_serving_is_warned_on_the_card_and_in_the_answer(box: Sandbox) -> None:
    blue_image = f"{REGISTRY}wa-backend:{SAMPLE_REVISIONS[-1][1]}"
    output = run(box, "as marta", f"/deploy {SERVICE} {blue_image}")
    assert release(box).state == "judging", "shown, not asked: the gates still judge green"
    expected = f"blue `{BLUE}` already runs this image"
    assert expected in card(box) and expected in output and "The release of" in output


def test_a_confirm_click_is_authorized_again(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {REGISTRY}wa-backend:latest")
    run(box, "as pablo", "click Release anyway")  # the click runs as the clicker
    assert release(box) is None and len(patches(box)) == 0
    assert any("senior developer" in n for n in ephemerals(box))


# -- Reject, and who may approve ---------------------------------------------------------------


def test_reject_rolls_back_to_blue_and_says_who(box: Sandbox) -> None:
    green = to_awaiting_approval(box)
    assert "Reject" in card(box) and "Approve 100%" in card(box)
    run(box, "as sofia")
    stale_approve, _ = box.click_body("Approve 100%")  # sofia's card, before it changes
    run(box, "as marta", "click Reject")  # not a tech lead: refused, nothing changes
    assert release(box).state == "awaiting_approval"
    assert serving(box) == {BLUE: 50, green: 50}
    run(box, "as luis", "click Reject")
    operation = release(box)
    assert operation.state == "rolled_back" and serving(box) == {BLUE: 100}
    assert operation.data["outcome"] == {"code": "rejected", "by": "U0LUIS"}
    assert "rejected by <@U0LUIS>" in card(box)
    rejected = audit(box, "release.rejected")
    assert [(a.actor, a.outcome) for a in rejected] == [("U0LUIS", "ok")]
    late_click(box, stale_approve)  # too late: already decided
    assert serving(box) == {BLUE: 100}
    assert any("already rejected by <@U0LUIS>" in n for n in ephemerals(box))


def test_the_release_card_says_who_may_approve(box: Sandbox) -> None:
    deploy(box)
    assert "Approve 100%: a tech lead other than <@U0MARTA>" in card(box)
    run(box, "wait 3m", "wait 3m")
    assert "Approve 100%: a tech lead other than <@U0MARTA>" in card(box)


def test_the_rollback_approval_card_says_who_may_approve(box: Sandbox) -> None:
    run(box, "as luis", "in #general", "/rollback wa-backend wa-backend-00002 scheduled")
    rollback_card = [
        m for m in box.emulator.slack.messages("C0GENERAL") if not m.get("ephemeral_to")
    ][-1]
    text = json.dumps(rollback_card["blocks"], ensure_ascii=False)
    assert "Approve: a tech lead other than <@U0LUIS>" in text


def test_the_approver_follows_the_matrix_in_app_yaml() -> None:
    config = sandbox_config()
    row = config.approvals.full_traffic.model_copy(
        update={"requester": "senior_developer", "approval": "self"}
    )
    approvals = config.approvals.model_copy(update={"full_traffic": row})
    box = Sandbox(config.model_copy(update={"approvals": approvals}), retry_deadline_s=1.5)
    try:
        deploy(box)
        assert "Approve 100%: a senior developer" in card(box)
        assert "other than" not in card(box)
    finally:
        box.close()


def test_a_tech_lead_cannot_approve_their_own_release_and_is_told_so(box: Sandbox) -> None:
    to_awaiting_approval(box, user="luis")
    run(box, "as luis", "click Approve 100%")
    assert release(box).state == "awaiting_approval"
    notes = "\n".join(ephemerals(box))
    assert "You asked for this release" in notes and "this rollback" not in notes


def test_a_click_after_expiry_shows_the_time_the_card_showed(box: Sandbox) -> None:
    to_awaiting_approval(box)
    shown = re.findall(r"expires <!date\^(\d+)\^", card(box))
    run(box, "as luis")
    stale_approve, _ = box.click_body("Approve 100%")  # luis's card, before it changes
    run(box, "wait 31m")  # the tick that expires it comes a minute after the deadline
    assert release(box).state == "rolled_back"
    late_click(box, stale_approve)
    said = [re.findall(r"<!date\^(\d+)\^", n) for n in ephemerals(box) if "expired" in n]
    assert shown and said and said[-1] == shown


# -- an on-call /rollback stops a release, with its reason -------------------------------------


def test_an_on_call_rollbacks_reason_is_on_the_release_card_and_in_the_audit(box: Sandbox) -> None:
    deploy(box)
    run(box, "wait 3m")
    run(box, "as ana", "/rollback wa-backend checkout broken <!channel>")
    operation = release(box)
    assert operation.state == "rolled_back" and serving(box) == {BLUE: 100}
    assert operation.data["outcome"]["reason"] == "checkout broken <!channel>"
    assert "Rolled back by <@U0ANA>: “checkout broken &lt;!channel&gt;”" in card(box)
    requested = audit(box, "release.rollback_requested")
    assert [a.detail["reason"] for a in requested] == ["checkout broken <!channel>"]


# -- other tags survive every release PATCH ----------------------------------------------------


@pytest.fixture
def tagged(box: Sandbox) -> Iterator[Sandbox]:
    """wa-backend with a `preview` tag on an old revision and `stable` on blue."""
    revisions = [
        {
            "name": f"{SERVICE}-{number}",
            "image": f"{REGISTRY}{SERVICE}:{version}",
            "age_s": age,
        }
        for number, version, age in SAMPLE_REVISIONS
    ]
    box.emulator.cloudrun.seed_service(
        PROJECT,
        REGION,
        SERVICE,
        revisions=revisions,
        traffic={BLUE: 100},
        tags={"preview": f"{SERVICE}-00001", "stable": BLUE},
    )
    yield box


KEPT = {"preview": f"{SERVICE}-00001", "stable": BLUE}


def test_other_tags_survive_a_release_to_100_percent(tagged: Sandbox) -> None:
    box = tagged
    green = deploy(box)
    assert tags(box) == {**KEPT, "green": green} and serving(box) == {BLUE: 90, green: 10}
    run(box, "wait 6m")  # Monitoring shows each step's minutes ~3 min late
    assert tags(box) == {**KEPT, "green": green} and serving(box) == {BLUE: 50, green: 50}
    run(box, "wait 6m", "as luis", "click Approve 100%")
    assert tags(box) == {**KEPT, "green": green} and serving(box) == {green: 100}
    run(box, "wait 7m")
    assert release(box).state == "succeeded"
    assert tags(box) == KEPT and serving(box) == {green: 100}


def test_other_tags_survive_a_rollback(tagged: Sandbox) -> None:
    box = tagged
    deploy(box)
    run(box, "wait 3m", "as marta", "click Roll back")
    assert release(box).state == "rolled_back"
    assert tags(box) == KEPT and serving(box) == {BLUE: 100}


def test_a_kept_tag_rides_on_its_revisions_target() -> None:
    state = ServiceState(
        ref=ServiceRef(PROJECT, REGION, SERVICE),
        etag="e",
        uri="",
        traffic=(
            TrafficStatus(BLUE, 50, "stable"),
            TrafficStatus("wa-backend-00004-abc", 50, "green"),
            TrafficStatus("wa-backend-00001", 0, "preview"),
        ),
        latest_ready_revision=BLUE,
    )
    assert with_other_tags([TrafficTarget(BLUE, 100)], state, own=(GREEN_TAG,)) == [
        TrafficTarget(BLUE, 100, "stable"),
        TrafficTarget("wa-backend-00001", 0, "preview"),
    ], "green's tag goes at the end of a release; the others stay"
