"""A click or a form speaks only for the person who sent it (issue #21): who requested, approved
or overrode comes from the signed payload's user or the stored request, never from a button's
value or a form's private_metadata; a registered migration verdict is never made weaker by a
later submission; a form that names another channel never starts a release nobody can see.

Signed Slack requests into the real Bolt app over HTTP, the emulators behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.sandbox.console import Sandbox
from bot.sandbox.slack_payloads import button_click, find_button, input_values, view_submission
from bot.store import Operation
from tests.helpers import run
from tests.test_readiness import OVERRIDE, gated_config
from tests.test_release_migrations import ADD, COMMIT, DROP, FLAG, ci, submit_form

SERVICE = "wa-backend"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"


@pytest.fixture
def gated() -> Iterator[Sandbox]:
    """The sandbox with the readiness gate on: production releases are blocked by the checklist."""
    sandbox = Sandbox(gated_config(), retry_deadline_s=1.5)
    try:
        yield sandbox
    finally:
        sandbox.close()


def operations(box: Sandbox, kind: str) -> list[Operation]:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == kind).order_by(Operation.created_at)
        return list(session.scalars(query))


def click_with_value(box: Sandbox, label: str, value: str) -> None:
    """Click ``label`` as the console's current user, the button's value replaced by ``value``
    (Slack signs whatever the button said; the value is only what the message carried)."""
    found = find_button(box.emulator.slack.messages(), label)
    assert found is not None, f"no {label!r} button"
    message, button, block_id = found
    user = box.users[box.user]
    url = box.emulator.slack.new_response_url(message["channel"], user, message["ts"])
    body = button_click(
        message, {**button, "value": value}, block_id, user, box.user, box.channel, url
    )
    assert box.post(body).status_code == 200
    box.runtime.engine.wait_idle(timeout_s=60)


def ephemerals(box: Sandbox, user: str) -> list[str]:
    return [
        m["text"] for m in box.emulator.slack.messages() if m.get("ephemeral_to") == box.users[user]
    ]


# -- a forged requester ---------------------------------------------------------------------------


def test_release_anyway_with_a_value_naming_someone_else_starts_nothing_for_them(
    gated: Sandbox,
) -> None:
    run(gated, "as sofia", f"/deploy {SERVICE} {IMAGE}")  # blocked by the checklist
    forged: dict[str, Any] = {"service": SERVICE, "image": IMAGE, "user": "U0MARTA"}
    run(gated, "as luis")
    click_with_value(gated, OVERRIDE, json.dumps({**forged, "confirmed": True}))
    assert operations(gated, "release") == [], "marta never asked"
    rows = gated.runtime.deps.store.journal.audit()
    other = next(r.id for r in rows if r.action != "release.blocked")
    for value in ({"blocked": other}, {"blocked": rows[-1].id + 100}, {"blocked": "1"}):
        click_with_value(gated, OVERRIDE, json.dumps(value))  # no blocked request
    assert operations(gated, "release") == []
    assert any("a request I don't know" in t for t in ephemerals(gated, "luis"))

    run(gated, f"click {OVERRIDE}")  # the button as Runback wrote it
    (release,) = operations(gated, "release")
    assert release.requested_by == gated.users["sofia"], "who typed /deploy"
    assert release.data["readiness"]["override_by"] == gated.users["luis"], "who clicked"


# -- a verdict made weaker ------------------------------------------------------------------------


def test_harmless_sql_in_the_form_never_weakens_the_destructive_verdict_ci_registered(
    sandbox: Sandbox,
) -> None:
    payload = {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": DROP}
    assert ci(sandbox, payload).status_code == 201
    run(sandbox, "as marta", f"/deploy {SERVICE} {IMAGE} --migration")
    refused = submit_form(sandbox, ADD)  # harmless, and no flag: destructive still needs one
    assert refused.json()["response_action"] == "errors"
    assert "destructive" in refused.json()["errors"]["flag"], "said beside the field"
    assert operations(sandbox, "release") == []
    assert sandbox.emulator.router.calls.list("run.services.patch") == []

    submit_form(sandbox, ADD, flag=FLAG)
    (release,) = operations(sandbox, "release")
    assert release.data["migration"]["verdict"] == "destructive"
    assert release.data["migration"]["source"] == "ci", "the statements CI judged"
    assert release.state == "backing_up", "the backup, then a tech lead's approval"
    kept = [
        a for a in sandbox.runtime.deps.store.journal.audit() if a.action == "release.verdict_kept"
    ]
    assert kept and kept[-1].detail["submitted"] == "additive"


# -- tampered form metadata -----------------------------------------------------------------------


def submit_tampered(box: Sandbox, user: str, sql: str, flag: str, **metadata: str) -> Any:
    """The newest /deploy --migration form of ``user``, its private_metadata edited."""
    user_id = box.users[user]
    record = [v for v in box.emulator.slack.views() if v["user"] == user_id][-1]
    view = {**record["view"], "id": record["id"], "hash": record["hash"]}
    view["private_metadata"] = json.dumps(metadata)
    typed = {"sql": sql, "flag": flag}
    trigger = box.emulator.slack.issue_trigger_id(user_id)
    body = view_submission(view, input_values(view, typed), user_id, user, trigger)
    response = box.post(body)
    box.runtime.engine.wait_idle(timeout_s=60)
    return response


def test_a_form_whose_metadata_names_another_channel_starts_nothing(sandbox: Sandbox) -> None:
    run(sandbox, "as marta", "in incidents", f"/deploy {SERVICE} {IMAGE} --migration")
    forged = {"channel": "C0ELSEWHERE", "service": SERVICE, "image": IMAGE}
    response = submit_tampered(sandbox, "marta", ADD, "", **forged)
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_action"] == "errors", "said in the form, which stays open"
    assert "/deploy" in answer["errors"]["sql"]
    assert operations(sandbox, "release") == []
    assert sandbox.emulator.router.calls.list("run.services.patch") == []
    refused = [
        a for a in sandbox.runtime.deps.store.journal.audit() if a.action == "release.refused"
    ]
    assert refused and refused[-1].detail["why"] == "form_tampered"

    submit_form(sandbox, ADD)  # the form as Runback opened it
    (release,) = operations(sandbox, "release")
    assert release.channel == "C0INCIDENTS"
