"""An on-call engineer during a restore (issue 21, "On-call always reaches safety"): a restore
spends minutes to hours on its clone without touching traffic, so an emergency /rollback goes
through at once, on SQLite and PostgreSQL; the restore goes on against whatever revision serves
when it deploys and shifts, and its card says so. A restore that only waited for its approval
is superseded: its card stops asking, and on-call is never told something went wrong."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from bot.ops.restore.states import Rebuilt, RestoreData
from bot.sandbox.console import Sandbox
from tests.conftest import sandbox_config
from tests.db import postgres_url
from tests.helpers import run, serving
from tests.test_database_flows import (
    BLUE,
    NEWEST,
    SERVICE,
    ask_and_approve,
    card,
    ephemerals,
    latest,
)

PREVIOUS = "wa-backend-00002"  # what on-call's /rollback goes back to


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def box(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[Sandbox]:
    caplog.set_level(logging.INFO)
    if request.param == "sqlite":
        sandbox = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)
        try:
            yield sandbox
        finally:
            sandbox.close()
    else:
        postgres_url()  # skips without PostgreSQL
        yield request.getfixturevalue("pg_sandbox")


def settle(box: Sandbox) -> None:
    box.runtime.engine.wait_idle(timeout_s=60)


def test_on_call_rolls_back_while_the_restore_creates_its_clone(box: Sandbox) -> None:
    ask_and_approve(box)
    run(box, "wait 1m")
    assert latest(box, "restore").state == "creating"

    run(box, "as ana", "in #incidents", "/rollback wa-backend bad deploy")
    settle(box)
    assert not any("busy" in note.lower() for note in ephemerals(box)), ephemerals(box)
    rollback = latest(box, "rollback")
    assert rollback.state == "succeeded", rollback.state
    assert serving(box) == {PREVIOUS: 100}, "on-call's rollback went through at once"
    restore = latest(box, "restore")
    assert restore.state == "creating", "the clone is still being made"
    shown = card(box, "restore")
    assert "rolled back" in shown and "goes on" in shown, shown

    run(box, "wait 6m", "wait 11m")
    settle(box)
    restore = latest(box, "restore")
    assert restore.state in ("judging", "succeeded"), RestoreData.of(restore).outcome
    assert serving(box) == {restore.to_revision: 100}
    assert restore.from_revision == PREVIOUS, "going back means the revision on-call chose"
    ref = box.runtime.deps.service_ref(box.config.service(SERVICE))
    new = box.runtime.deps.cloudrun.get_revision(ref, restore.to_revision)
    previous = box.runtime.deps.cloudrun.get_revision(ref, PREVIOUS)
    same_code = box.emulator.cloudrun.images.resolve(previous.image)  # pinned by its digest
    assert new.image == same_code, "built on the revision that serves, not the bad one"


def test_on_call_during_the_restores_deploy_gets_through_and_the_restore_rebuilds(
    box: Sandbox,
) -> None:
    """On-call rolls back while the restore's revision, built on the bad revision, is being
    deployed at 0%: the rollback goes through; the restore then builds its revision again on
    the revision that serves, rather than shifting onto the bad code."""
    ask_and_approve(box)
    run(box, "wait 6m")
    assert latest(box, "restore").state == "restoring"
    box.emulator.cloudrun.operation_delay_s = 1.5  # Cloud Run takes a moment to apply
    run(box, "as ana", "in #incidents")
    rollback = box.slash_body("/rollback wa-backend bad deploy")
    answers: list[int] = []
    firsts: list[str] = []

    def on_call_during_the_deploy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not RestoreData.of(latest(box, "restore")).run_op:
            time.sleep(0.02)
        firsts.append(latest(box, "restore").to_revision)  # built on the bad revision
        answers.append(box.post(rollback).status_code)

    thread = threading.Thread(target=on_call_during_the_deploy)
    thread.start()
    run(box, "wait 11m")
    thread.join(timeout=90)
    settle(box)
    assert answers == [200]
    assert latest(box, "rollback").state == "succeeded"
    [first] = firsts
    for _ in range(6):
        run(box, "wait 1m")
        settle(box)
    restore = latest(box, "restore")
    assert restore.state in ("judging", "succeeded"), (
        restore.state,
        RestoreData.of(restore).outcome,
    )
    assert RestoreData.of(restore).rebuilt == Rebuilt(was=first, on=PREVIOUS)
    assert restore.to_revision != first and serving(box) == {restore.to_revision: 100}
    assert restore.from_revision == PREVIOUS
    ref = box.runtime.deps.service_ref(box.config.service(SERVICE))
    new = box.runtime.deps.cloudrun.get_revision(ref, restore.to_revision)
    previous = box.runtime.deps.cloudrun.get_revision(ref, PREVIOUS)
    assert new.image == box.emulator.cloudrun.images.resolve(previous.image)
    tags = [row["tag"] for row in box.emulator.cloudrun.traffic(SERVICE) if row["tag"]]
    assert "restored" not in tags
    assert "rebuilt on `wa-backend-00002`" in card(box, "restore")


def test_a_restore_waiting_for_approval_is_superseded_and_stops_asking(box: Sandbox) -> None:
    run(box, "as luis", f"/ops restore {SERVICE} {NEWEST}", "click Ask to restore")
    assert latest(box, "restore").state == "awaiting_approval"
    run(box, "as ana", "in #incidents", "/rollback wa-backend")
    settle(box)
    notes = ephemerals(box)
    assert not any("Something went wrong" in note for note in notes), notes
    assert serving(box) == {PREVIOUS: 100}
    restore = latest(box, "restore")
    assert restore.state == "cancelled"
    shown = card(box, "restore")
    assert '"Approve"' not in shown, "the card no longer asks for an approval"
    assert "on-call" in shown.lower() or "superseded" in shown.lower(), shown
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None


def test_on_call_while_the_restored_revision_is_judged_goes_back(box: Sandbox) -> None:
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")
    settle(box)
    assert latest(box, "restore").state == "judging"
    run(box, "as ana", "in #incidents", "/rollback wa-backend")
    settle(box)
    assert not any("busy" in note.lower() for note in ephemerals(box)), ephemerals(box)
    restore = latest(box, "restore")
    assert restore.state == "rolled_back"
    assert serving(box) == {BLUE: 100}


def test_an_incident_on_the_restored_revision_is_mitigated_when_on_call_goes_back(
    box: Sandbox,
) -> None:
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")
    settle(box)
    assert latest(box, "restore").state == "judging"
    run(box, "alert wa-backend")
    settle(box)
    [incident] = box.runtime.deps.store.incidents.open_incidents(SERVICE)
    run(box, "as ana", "in #incidents", "/rollback wa-backend")
    settle(box)
    assert latest(box, "restore").state == "rolled_back"
    incident = box.runtime.deps.store.incidents.incident(incident.id)
    assert incident is not None and incident.state == "mitigated"
