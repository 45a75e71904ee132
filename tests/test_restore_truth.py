"""A restore tells the truth and can be done twice (issues 21 and 22): restores chain, a clone
name never collides with a retry's, the preview warns of a restore that would stop at its
secret step, a failed smoke test leaves no tag behind, and the restored revision is judged as
long as a release's last step (bad numbers after one good window still go back)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from bot.ops.restore.states import RestoreData
from bot.sandbox.console import Sandbox
from bot.sandbox.seed import SAMPLE_PASSWORD
from bot.store import Operation
from tests.conftest import sandbox_config
from tests.helpers import run, serving
from tests.test_database_flows import (
    BLUE,
    NEWEST,
    PROJECT,
    SERVICE,
    ask_and_approve,
    calls,
    card,
    latest,
)

OLDER = str(int(NEWEST) - 1)


@pytest.fixture
def box(caplog: pytest.LogCaptureFixture) -> Iterator[Sandbox]:
    caplog.set_level(logging.INFO)
    sandbox = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)
    try:
        yield sandbox
    finally:
        sandbox.close()


def tags(box: Sandbox) -> list[str]:
    return [row["tag"] for row in box.emulator.cloudrun.traffic(SERVICE) if row["tag"]]


def test_a_second_restore_after_a_successful_one_chains_onto_the_first_clone(
    box: Sandbox,
) -> None:
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m", "wait 10m")
    first = latest(box, "restore")
    was = RestoreData.of(first)
    assert first.state == "succeeded"

    out = run(box, "as luis", f"/ops restore {SERVICE} {OLDER}")
    assert f"runs on `{was.clone}` now" in out, "the preview says what it replaces"
    assert "would stop at its secret step" not in out
    run(box, "click Ask to restore", "as sofia", "click Approve")
    run(box, "wait 6m", "wait 11m", "wait 10m")
    second = latest(box, "restore")
    assert second.id != first.id
    assert second.state == "succeeded", RestoreData.of(second).outcome
    assert serving(box) == {second.to_revision: 100}
    pointed = box.emulator.secrets.value(PROJECT, "wa-backend-database-url", "3")
    now = RestoreData.of(second)
    assert f":{now.clone}" in pointed and SAMPLE_PASSWORD in pointed
    assert was.clone not in pointed
    assert now.replaces == was.clone


def test_the_preview_warns_when_the_restore_would_stop_at_the_secret_step(box: Sandbox) -> None:
    box.emulator.secrets.seed_secret(
        PROJECT, "wa-backend-database-url", "postgresql://app:pw@db.example.com/app"
    )
    # the serving revision reads version 1: seed_secret made a fresh secret
    out = run(box, "as luis", f"/ops restore {SERVICE} {NEWEST}")
    assert "would stop at its secret step" in out
    assert "names neither the instance's connection name nor its IP address" in out
    assert "db.example.com" not in out and calls(box, "sql.instances.insert") == 0


def test_a_restore_retried_in_the_same_minute_gets_a_clone_of_its_own(box: Sandbox) -> None:
    run(box, "fault sql.instances.insert 504 1")  # applied by Cloud SQL, the answer lost
    box.emulator.router.faults.list()[0].after = True
    ask_and_approve(box)
    failed = latest(box, "restore")
    assert failed.state == "failed" and RestoreData.of(failed).outcome.step == "create"
    clones = {RestoreData.of(failed).clone}
    for _ in range(3):  # asked again at once, three times, within the same minute
        ask_and_approve(box)
        operation = latest(box, "restore")
        assert operation.state == "creating", RestoreData.of(operation).outcome
        clones.add(RestoreData.of(operation).clone)
        box.runtime.deps.store.operations.update_operation(
            operation.id, box.clock.now(), state="cancelled"
        )
        box.runtime.deps.store.operations.release_lock(SERVICE, operation.id)
    assert len(clones) == 4
    assert all(len(clone) <= 63 and clone.startswith("wa-backend-db-r") for clone in clones)


def test_a_failed_smoke_test_leaves_no_restored_tag(box: Sandbox) -> None:
    box.emulator.cloudrun.new_revision_behaviour(healthz_status=500)
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")
    operation = latest(box, "restore")
    assert operation.state == "failed" and RestoreData.of(operation).outcome.step == "smoke"
    assert serving(box) == {BLUE: 100}
    assert "restored" not in tags(box), "the 0% revision keeps no tag"


def judging(box: Sandbox) -> Operation:
    """A restore approved and carried on until its revision serves and is judged."""
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")  # the clone is created, the backup restored, traffic moved
    operation = latest(box, "restore")
    assert operation.state == "judging", RestoreData.of(operation).outcome
    return operation


def test_a_restore_judges_each_new_minute_once_and_says_when_it_waits(box: Sandbox) -> None:
    """As a release's last step (bot/ops/metrics_window.py): a check that finds no minute
    Monitoring did not show at the last judgement judges nothing; the card says it waits."""
    judging(box)
    waiting_shown = []
    for _ in range(12):
        run(box, "wait 15s")
        operation = latest(box, "restore")
        if operation.state == "judging" and RestoreData.of(operation).waiting is not None:
            waiting_shown.append("Waiting for Monitoring's next minute" in card(box, "restore"))
    data = RestoreData.of(latest(box, "restore"))
    ends = [j["window_end"] for j in data.judgements]
    assert ends and len(set(ends)) == len(ends), f"a minute judged twice: {ends}"
    assert data.last == data.judgements[-1], "the card's last check is the newest judgement"
    assert waiting_shown and all(waiting_shown), "the card says what it waits for"
    audited = [a for a in box.runtime.deps.store.journal.audit() if a.action == "restore.judged"]
    assert len(audited) == len(ends), "only judgements are audited, not the checks that waited"


def test_bad_numbers_after_a_first_good_window_still_go_back() -> None:
    """As a release's 100% step: judged for warm-up + ``validation_s`` (ten minutes here), not
    ended by the first good window."""
    config = sandbox_config()
    release = config.release.model_copy(update={"validation_s": 600})
    box = Sandbox(config.model_copy(update={"release": release}), scheduler=False)
    try:
        _bad_after_good(box)
    finally:
        box.close()


def _bad_after_good(box: Sandbox) -> None:
    operation = judging(box)
    run(box, "wait 2m")  # the first windows Monitoring shows are good: a first "proceed"
    box.emulator.cloudrun.set_behaviour(operation.to_revision, error_rate=0.2)
    for _ in range(12):
        run(box, "wait 1m")
    operation = latest(box, "restore")
    assert operation.state == "rolled_back", (operation.state, RestoreData.of(operation).last)
    assert serving(box) == {BLUE: 100}
    assert "restored" not in tags(box)
    assert "Back on `wa-backend-00003`" in card(box, "restore")


def test_an_observation_under_way_is_not_ended_unverified_while_monitoring_is_late() -> None:
    """Errors in the observe band (1-5%) on the restored revision, then Monitoring shows nothing
    new past ``inconclusive_limit_s``: the restore does not end "succeeded, unverified" with an
    observation under way; it waits for data time, and the band that stays goes back."""
    config = sandbox_config()
    limits = {"validation_s": 1800, "inconclusive_limit_s": 420}
    release = config.release.model_copy(update=limits)
    box = Sandbox(config.model_copy(update={"release": release}), scheduler=False)
    try:
        operation = judging(box)
        box.emulator.cloudrun.set_behaviour(operation.to_revision, error_rate=0.03)
        for _ in range(16):  # the first minutes after the warm-up show ~3 minutes late
            run(box, "wait 30s")
            if RestoreData.of(latest(box, "restore")).observing_since:
                break
        data = RestoreData.of(latest(box, "restore"))
        assert data.observing_since and data.shifted_at, data.judgements
        _set_monitoring_delay(box, 3600)  # nothing newer shows
        run(box, "wait 5m")
        operation, data = latest(box, "restore"), RestoreData.of(latest(box, "restore"))
        waited = box.clock.now() - datetime.fromisoformat(data.shifted_at)
        assert waited.total_seconds() > 420, "past the limit of too little data"
        assert operation.state == "judging", (operation.state, data.verified)
        assert data.waiting is not None and data.observing_since
        _set_monitoring_delay(box, 180)  # the minutes show again: the band stayed
        for _ in range(10):
            run(box, "wait 1m")
            if latest(box, "restore").state != "judging":
                break
        operation = latest(box, "restore")
        assert operation.state == "rolled_back", RestoreData.of(operation).judgements
        assert serving(box) == {BLUE: 100}
    finally:
        box.close()


def _set_monitoring_delay(box: Sandbox, seconds: float) -> None:
    """How late Monitoring shows a minute (the emulator's control API, over its socket)."""
    url = f"{box.emulator.url}/_emulator/monitoring/config"
    response = requests.post(url, json={"delay_s": seconds}, timeout=5)
    assert response.status_code == 200, response.text


def test_a_go_back_slower_than_the_timeout_is_followed_to_the_end_not_failed() -> None:
    """Cloud Run still applying the way back after ``operation_timeout_s``: the restore commits
    the change's operation, follows it on (bot/ops/applying.py follow_change) and ends rolled
    back; it never ends "failed" while traffic may still be moving."""
    box = Sandbox(sandbox_config(operation_timeout_s=0.3), scheduler=False)  # the way back's
    try:
        operation = judging(box)
        box.emulator.cloudrun.set_behaviour(operation.to_revision, error_rate=0.2)
        box.emulator.cloudrun.operation_delay_s = 1.0  # three timeouts' worth of waiting
        for _ in range(10):
            run(box, "wait 1m")
            if latest(box, "restore").state != "judging":
                break
        operation = latest(box, "restore")
        data = RestoreData.of(operation)
        assert operation.state == "rolled_back", (operation.state, data.going_back_failed)
        assert serving(box) == {BLUE: 100} and "restored" not in tags(box)
        events = [e.kind for e in box.runtime.deps.store.journal.timeline(operation.id)]
        assert "operation_slow" in events, events
        sent = [a for a in box.runtime.deps.store.journal.audit() if a.action.endswith("go_back")]
        assert len(sent) == 1, "the way back sent once, then followed"
        assert data.run_op == ""
    finally:
        box.close()


def test_going_back_warns_that_writes_since_the_restore_stay_on_the_clone(box: Sandbox) -> None:
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")
    clone = RestoreData.of(latest(box, "restore")).clone
    shown = card(box, "restore")
    assert "Go back to the old database" in shown
    assert f"Writes made since the restore stay on `{clone}`" in shown, "in the confirm dialog"
    run(box, "wait 10m")
    assert f"writes made since the restore stay on `{clone}`" in card(box, "restore")
