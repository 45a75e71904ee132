"""A typo never acts (issue 20): bad input is refused before anything is pre-empted or flipped,
with the same rules with and without a release running. The real bot in the sandbox."""

from __future__ import annotations

import json

from bot.sandbox.console import Sandbox
from tests.helpers import run, serving

SERVICE = "wa-backend"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"


def audit_events(box: Sandbox) -> list[str]:
    return [a.action for a in box.runtime.deps.store.journal.audit()]


def card_text(box: Sandbox, channel: str) -> str:
    messages = [m for m in box.emulator.slack.messages(channel) if not m.get("ephemeral_to")]
    return json.dumps(messages[-1]["blocks"], ensure_ascii=False)


def test_a_mistyped_revision_is_refused_before_a_pending_rollback_is_pre_empted(sandbox) -> None:
    run(sandbox, "as luis", "in #general", "/rollback wa-backend deploy broke search")
    pending = sandbox.runtime.deps.store.operations.latest_operation(SERVICE, "rollback")
    assert pending.state == "awaiting_approval"

    answer = run(sandbox, "as ana", "in #incidents", "/rollback wa-backend wa-backend-0002")
    assert "wa-backend-0002" in answer and "wa-backend-00002" in answer  # did you mean
    assert sandbox.runtime.deps.store.operations.operation(pending.id).state == "awaiting_approval"
    assert "rollback.superseded" not in audit_events(sandbox)
    assert serving(sandbox) == {"wa-backend-00003": 100}


def test_a_pre_empted_card_says_who_pre_empted_it_and_why(sandbox) -> None:
    run(sandbox, "as luis", "in #general", "/rollback wa-backend deploy broke search")
    run(sandbox, "as ana", "in #incidents", "/rollback wa-backend checkout down for everyone")
    assert serving(sandbox) == {"wa-backend-00002": 100}
    card = card_text(sandbox, "C0GENERAL")
    assert "Cancelled" in card
    assert "<@U0ANA>" in card and "checkout down for everyone" in card


def test_a_revision_like_word_during_a_release_is_bad_input_not_a_reason(sandbox) -> None:
    without = run(sandbox, "as ana", "/rollback wa-backend 00009")
    assert "`00009` is not a revision of `wa-backend`" in without
    run(sandbox, "as marta", f"/deploy {SERVICE} {IMAGE}")
    green = next(r for r in serving(sandbox) if r.startswith("wa-backend-00004"))
    assert serving(sandbox)[green] == 10
    during = run(sandbox, "as ana", "/rollback wa-backend 00009")
    assert "`00009` is not a revision of `wa-backend`" in during  # the same rule everywhere
    assert serving(sandbox).get(green) == 10, "a typo rolled the release back"
    release = sandbox.runtime.deps.store.operations.latest_operation(SERVICE, "release")
    assert release.state not in ("rolling_back", "rolled_back")


def test_a_mistyped_flag_name_gets_did_you_mean_and_is_not_flipped(sandbox) -> None:
    before = serving(sandbox)
    answer = run(sandbox, "as marta", "/flag wa-backend NEW_CHEKOUT on the new checkout")
    assert "Did you mean `NEW_CHECKOUT`?" in answer
    assert "`/flag wa-backend NEW_CHEKOUT on --new the new checkout`" in answer
    assert (
        serving(sandbox) == before
        and sandbox.runtime.deps.store.operations.lock_holder(SERVICE) is None
    )
    assert sandbox.runtime.deps.store.operations.latest_operation(SERVICE, "flag") is None


def test_a_new_flag_confirmed_as_new_is_flipped(sandbox) -> None:
    run(sandbox, "as marta", "/flag wa-backend DARK_MODE on --new try it")
    flip = sandbox.runtime.deps.store.operations.latest_operation(SERVICE, "flag")
    assert flip is not None and flip.reason == "try it"
    assert "DARK_MODE=true" in run(sandbox, "traffic wa-backend")


def test_a_mistyped_ops_subcommand_gets_did_you_mean(sandbox) -> None:
    answer = run(sandbox, "as ana", "/ops chek wa-backend")
    assert "Did you mean `/ops check wa-backend`?" in answer
