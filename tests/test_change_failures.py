"""Why a change failed, in Cloud Run's own words: when a PATCH's answer is lost, Runback follows
the service until `reconciling` ends and then reads its `terminalCondition`; a change that
failed shows Cloud Run's reason and message on the card (rollback, release, flag flip), never
"the traffic is not there". The real run_v2 client against the Cloud Run emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from bot.store import Operation
from tests.conftest import sandbox_config

QUOTA = "Quota exceeded for total allowable CPU per project per region."
NOT_STARTED = "failed to start and listen on the port"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox(sandbox_config(), retry_deadline_s=3)
    try:
        yield sandbox
    finally:
        sandbox.close()


def lose_the_next_patch_answer(box: Sandbox) -> None:
    """Cloud Run applies the PATCH, but its answer never arrives (a 503 after the fact): the
    client retries, meets a stale etag, and Runback follows the service instead."""
    box.emulator.router.faults.add(Fault("run.services.patch", 503, times=1, after=True))


def newest(box: Sandbox, kind: str) -> Operation:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == kind)
        found = session.scalars(query.order_by(Operation.created_at.desc())).first()
    assert found is not None
    return found


def card(box: Sandbox, operation: Operation) -> str:
    box.runtime.engine.wait_idle()
    message = box.emulator.slack.message(operation.channel, operation.message_ts)
    return json.dumps(message["blocks"], ensure_ascii=False)


def test_a_failed_rollback_says_cloud_runs_reason(box: Sandbox) -> None:
    lose_the_next_patch_answer(box)
    box.emulator.cloudrun.fail_next_operations(QUOTA, code=8)
    box.run_line("as ana")
    box.run_line("/rollback wa-backend bad release")
    rollback = newest(box, "rollback")
    assert rollback.state == "failed", rollback.state
    text = card(box, rollback)
    assert f"Cloud Run did not apply the change: {QUOTA}" in text, text
    assert "traffic is not 100%" not in text


def test_a_release_whose_green_never_starts_says_why(box: Sandbox) -> None:
    lose_the_next_patch_answer(box)
    box.emulator.cloudrun.fail_next_revisions()
    box.run_line("as marta")
    box.run_line("/deploy wa-backend us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0")
    release = newest(box, "release")
    assert release.state == "failed", release.state
    text = card(box, release)
    assert "Cloud Run refused the new revision (REVISION_FAILED: Revision" in text, text
    assert NOT_STARTED in text


def test_a_flag_flip_whose_revision_never_starts_says_why(box: Sandbox) -> None:
    lose_the_next_patch_answer(box)
    box.emulator.cloudrun.fail_next_revisions()
    box.run_line("as marta")
    box.run_line("/flag wa-backend NEW_CHECKOUT on")
    flip = newest(box, "flag")
    assert flip.state == "failed", flip.state
    text = card(box, flip)
    assert "(REVISION_FAILED: Revision" in text and NOT_STARTED in text, text
