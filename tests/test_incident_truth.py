"""The on-call path is never hidden or demoted, and incident records keep telling the truth:
through the real bot, Bolt over HTTP, the Slack emulator and the Cloud Run emulator."""

from __future__ import annotations

import json

import pytest

from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from bot.sandbox.seed import alert_payload
from tests.helpers import patches, serving

SERVICE = "wa-backend"
BAD, GOOD = "wa-backend-00003", "wa-backend-00002"


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    return sandbox


def manual_rollbacks_only(box: Sandbox) -> None:
    """The service's automatic rollback is off: the card asks a person to press Roll back."""
    config = box.runtime.deps.config
    services = tuple(s.model_copy(update={"auto_rollback": False}) for s in config.services)
    box.runtime.deps.config = config.model_copy(update={"services": services})


def open_alert(box: Sandbox, state: str = "open") -> str:
    response = box.post_alert(alert_payload(box.emulator, SERVICE, state, "0.alert-1"))
    box.runtime.engine.wait_idle()
    assert response.status_code == 200, response.text
    return str(response.json()["incident"])


def card(box: Sandbox, incident_id: str) -> str:
    record = box.runtime.deps.store.incidents.incident(incident_id)
    message = box.emulator.slack.message("C0INCIDENTS", record.message_ts)
    return json.dumps(message["blocks"], ensure_ascii=False)


def buttons(box: Sandbox, incident_id: str) -> list[str]:
    blocks = json.loads(card(box, incident_id))
    return [
        element["action_id"]
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def ephemerals(box: Sandbox) -> str:
    messages = [m for m in box.emulator.slack.messages() if m.get("ephemeral_to")]
    return json.dumps(messages, ensure_ascii=False)


# -- the on-call path ------------------------------------------------------------------------------


def test_a_tech_leads_click_never_demotes_an_emergency(box: Sandbox) -> None:
    manual_rollbacks_only(box)
    box.emulator.cloudrun.set_behaviour(BAD, error_rate=0.09)
    box.run_line("wait 9m")  # a whole bad window, Monitoring being ~3 min late
    incident = open_alert(box)
    assert "incident_roll_back" in buttons(box, incident)
    box.run_line("as luis")  # a tech lead, not on call: only a scheduled request could follow
    box.run_line("click Roll back")
    assert "emergency rollback" in ephemerals(box)
    store = box.runtime.deps.store
    assert store.operations.lock_holder(SERVICE) is None, (
        "no 30-minute scheduled request was created"
    )
    assert store.incidents.incident(incident).operation_id == ""
    assert "incident_roll_back" in buttons(box, incident), "on-call's button is still there"
    refusals = [a for a in store.journal.audit() if a.action == "rollback.refused"]
    assert refusals[-1].detail["why"] == "emergency_needs_on_call"
    box.run_line("as ana")
    box.run_line("click Roll back")
    assert serving(box) == {GOOD: 100}


def test_a_pending_scheduled_rollback_keeps_the_on_call_button(box: Sandbox) -> None:
    box.emulator.cloudrun.set_behaviour(BAD, error_rate=0.03)  # observe: no emergency yet
    box.run_line("wait 9m")  # a whole bad window, Monitoring being ~3 min late
    incident = open_alert(box)
    box.run_line("as luis")
    box.run_line("click Roll back")  # a scheduled rollback, waiting for a second tech lead
    store = box.runtime.deps.store
    pending = store.operations.operation(store.incidents.incident(incident).operation_id)
    assert pending.state == "awaiting_approval" and len(patches(box)) == 0
    text = card(box, incident)
    assert "waiting for a second tech lead" in text and "<@U0LUIS>" in text
    assert "incident_roll_back" in buttons(box, incident)
    box.run_line("as ana")
    box.run_line("click Roll back")  # the on-call engineer gets to safety at once
    assert serving(box) == {GOOD: 100}
    assert store.operations.operation(pending.id).state == "cancelled"


# -- records that tell the truth -------------------------------------------------------------------


def test_a_resolved_incident_keeps_its_facts(box: Sandbox) -> None:
    box.emulator.cloudrun.set_behaviour(BAD, error_rate=0.07)
    box.run_line("wait 9m")  # a whole bad window, Monitoring being ~3 min late
    incident = open_alert(box)
    assert serving(box) == {GOOD: 100}
    listing = "\n".join(box.run_line("/ops incidents"))
    assert "*Mitigated*: Rollback triggered: traffic moved to `wa-backend-00002`" in listing
    open_alert(box, state="closed")
    text = card(box, incident)
    assert "Rollback triggered: traffic moved to `wa-backend-00002` by Runback" in text
    assert "the alert closed in Cloud Monitoring" in text
    assert buttons(box, incident) == []


def test_resolved_names_the_person_who_resolved_it(box: Sandbox) -> None:
    box.emulator.cloudrun.set_behaviour(BAD, error_rate=0.07)
    box.run_line("wait 9m")  # a whole bad window, Monitoring being ~3 min late
    incident = open_alert(box)
    box.run_line("as luis")
    box.run_line("click Resolve")
    text = card(box, incident)
    assert "Resolved" in text and "by <@U0LUIS>" in text
    assert "traffic moved to `wa-backend-00002`" in text


def test_a_recovered_incident_in_observation_can_be_resolved(box: Sandbox) -> None:
    box.emulator.cloudrun.set_behaviour(BAD, error_rate=0.03)
    box.run_line("wait 9m")  # a whole bad window, Monitoring being ~3 min late
    incident = open_alert(box)
    assert "incident_resolve" not in buttons(box, incident)
    box.emulator.cloudrun.set_behaviour(BAD, error_rate=0.0)
    box.run_line("wait 6m")
    for _ in range(2):  # seen once in a loaded full run: the verdict a minute later (see #18)
        if box.runtime.deps.store.incidents.incident(incident).verdict == "proceed":
            break
        box.run_line("wait 1m")
    found = box.runtime.deps.store.incidents.incident(incident)
    assert found.verdict == "proceed", card(box, incident)
    assert "incident_resolve" in buttons(box, incident)
    box.run_line("as luis")
    box.run_line("click Resolve")
    assert (
        box.runtime.deps.store.incidents.incident(incident).state == "resolved"
        and len(patches(box)) == 0
    )


def test_the_card_names_what_an_error_rate_alert_measured(box: Sandbox) -> None:
    box.emulator.cloudrun.set_behaviour(BAD, error_rate=0.07)
    box.run_line("wait 9m")  # a whole bad window, Monitoring being ~3 min late
    text = card(box, open_alert(box))
    assert "error rate (5xx responses ÷ all requests)" in text and "Request Count" not in text
    assert "*Threshold:* 1%" in text and "*Current (alert):* 7%" in text


def test_a_failed_patch_is_never_ticked(box: Sandbox) -> None:
    box.emulator.router.faults.add(Fault("run.services.patch", 400, times=1))
    box.run_line("/rollback wa-backend")
    message = box.emulator.slack.messages("C0INCIDENTS")[0]
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "✗ traffic update sent" in text and "✓ traffic update sent" not in text
    assert serving(box) == {BAD: 100}


def test_the_postmortem_names_people_and_is_plain_markdown(box: Sandbox) -> None:
    manual_rollbacks_only(box)
    box.emulator.cloudrun.set_behaviour(BAD, error_rate=0.09)
    box.run_line("wait 9m")  # a whole bad window, Monitoring being ~3 min late
    open_alert(box)
    box.run_line("as ana")
    box.run_line("click Roll back")
    (postmortem,) = box.emulator.slack.files()
    content = postmortem["content"]
    assert "| Rollback requested by | ana (`U0ANA`) |" in content  # users.info's display name
    assert "error rate \\> 1%" in content, "Markdown escaping, not Slack's"
    assert "&gt;" not in content and "&amp;" not in content
