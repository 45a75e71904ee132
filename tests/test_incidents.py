"""Incidents end to end: Cloud Monitoring's webhook in, the decision table on fresh numbers from
the Monitoring emulator (over gRPC), the automatic rollback, the lifecycle and the postmortem."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest

from bot.ops import incidents
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from bot.sandbox.seed import alert_payload
from tests.helpers import patches, serving, wait_until

SERVICE = "wa-backend"
BAD = "wa-backend-00003"


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    return sandbox


def alert(box: Sandbox, state: str = "open", incident_id: str = "0.alert-1", **changes) -> dict:
    payload = json.loads(alert_payload(box.emulator, SERVICE, state, incident_id))
    payload["incident"].update(changes)
    response = box.post_alert(json.dumps(payload))
    box.runtime.engine.wait_idle()
    assert response.status_code == 200, response.text
    return response.json()


def bad_for(box: Sandbox, minutes: str = "9m", **behaviour: float) -> None:
    """Bad for long enough that Monitoring (~3 minutes late) shows a whole bad window."""
    box.emulator.cloudrun.set_behaviour(BAD, **behaviour)
    box.run_line(f"wait {minutes}")


def card_text(box: Sandbox, ts: str) -> str:
    message = box.emulator.slack.message("C0INCIDENTS", ts)
    assert message is not None
    return json.dumps(message["blocks"], ensure_ascii=False)


# -- each row of the decision table --------------------------------------------------------------


def test_error_rate_spike_rolls_back_and_posts_the_postmortem_once(box: Sandbox) -> None:
    bad_for(box, error_rate=0.07)
    answer = alert(box)
    assert answer["status"] == "created"
    assert serving(box) == {"wa-backend-00002": 100}
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert record.state == "mitigated" and record.verdict == "rollback"
    text = card_text(box, record.message_ts)
    assert "[PROD] Error rate spike detected" in text and "Rollback triggered" in text
    assert "1,200 requests): error rate 7.00%" in text, "the newest minute decides"
    files = box.emulator.slack.files()
    assert len(files) == 1 and "Postmortem draft: wa-backend" in files[0]["content"]
    assert files[0]["name"] == f"postmortem-wa-backend-{record.id}.md"
    # a second report of mitigation does not post a second draft
    assert incidents.post_postmortem(box.runtime.deps, record.id) is False
    incidents.on_operation_finished(
        box.runtime.deps, box.runtime.deps.store.operations.operation(record.operation_id)
    )
    assert len(box.emulator.slack.files()) == 1


def test_postmortem_counts_the_bad_revisions_error_logs(box: Sandbox) -> None:
    bad_for(box, error_rate=0.07)
    box.emulator.logging.reset()  # only the entries below (Cloud Run's own have their test)
    for order in (8812, 17, 4521):
        box.emulator.logging.add_entry(_error_log(f"timeout after {order}ms calling payments"))
    box.emulator.logging.add_entry(_error_log("KeyError: 'slots_v2'"))
    box.emulator.logging.add_entry(_error_log("fine", severity="INFO"))
    box.emulator.logging.add_entry(_error_log("other revision", revision="wa-backend-00002"))
    alert(box)
    files = wait_until(box.emulator.slack.files, "the postmortem draft in the thread")
    content = files[0]["content"]
    section = content.split("Top error messages")[1].split("\n---\n")[0]
    assert "| 3 |" in section and "timeout after" in section
    assert "slots_v2" in section
    assert "fine" not in section and "other revision" not in section
    list_calls = box.emulator.router.calls.list("logging.entries.list")
    assert list_calls and 'revision_name="wa-backend-00003"' in list_calls[-1].body["filter"]


def _error_log(text: str, severity: str = "ERROR", revision: str = BAD) -> dict:
    return {
        "logName": "projects/runback-sandbox/logs/run.googleapis.com%2Fstderr",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {"service_name": SERVICE, "revision_name": revision},
        },
        "severity": severity,
        "textPayload": text,
    }


def test_p95_over_two_seconds_rolls_back(box: Sandbox) -> None:
    bad_for(box, p95_ms=2600)
    alert(box)
    assert serving(box) == {"wa-backend-00002": 100}


def test_failing_healthz_rolls_back(box: Sandbox) -> None:
    box.emulator.cloudrun.set_behaviour(BAD, healthz_status=503)
    alert(box)
    assert serving(box) == {"wa-backend-00002": 100}


def test_below_thresholds_is_recovered_with_no_action(box: Sandbox) -> None:
    answer = alert(box)
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert record.verdict == "proceed" and record.state == "open"
    assert "Recovered, no action" in card_text(box, record.message_ts)
    assert len(patches(box)) == 0


def test_observe_band_then_recovers(box: Sandbox) -> None:
    bad_for(box, error_rate=0.03)
    answer = alert(box)
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert record.verdict == "observe" and record.observe_until is not None
    assert "Observing Monitoring's minutes until" in card_text(box, record.message_ts)
    box.emulator.cloudrun.set_behaviour(BAD, error_rate=0.0)
    box.run_line("wait 6m")  # the window is past, and the errors are out of it
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert record.verdict == "proceed" and len(patches(box)) == 0
    assert serving(box) == {BAD: 100}


def test_observe_band_then_rolls_back_when_not_recovered(box: Sandbox) -> None:
    bad_for(box, error_rate=0.03)
    answer = alert(box)
    assert "(5 min left" in card_text(
        box, box.runtime.deps.store.incidents.incident(answer["incident"]).message_ts
    )
    box.run_line("wait 2m")
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert record.verdict == "observe" and len(patches(box)) == 0, "still inside the window"
    assert "(3 min left" in card_text(box, record.message_ts), "the countdown is live"
    box.run_line("wait 4m")
    assert serving(box) == {"wa-backend-00002": 100}
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert record.state == "mitigated"
    assert record.data["judgements"][-1]["verdict"] == "observe_expired"


def test_monitoring_failure_is_never_a_pass(box: Sandbox) -> None:
    box.emulator.router.faults.add(Fault("monitoring.timeSeries.list", 503, times=None))
    answer = alert(box)
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert record.verdict == "inconclusive" and len(patches(box)) == 0
    assert "no data from Cloud Monitoring" in card_text(box, record.message_ts)


def test_auto_rollback_off_recommends_and_on_call_clicks(box: Sandbox) -> None:
    config = box.config
    services = tuple(s.model_copy(update={"auto_rollback": False}) for s in config.services)
    box.runtime.deps.config = config.model_copy(update={"services": services})
    bad_for(box, error_rate=0.09)
    answer = alert(box)
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert len(patches(box)) == 0 and "Roll back recommended" in card_text(box, record.message_ts)
    box.run_line("as eve")
    box.run_line("click Roll back")
    assert len(patches(box)) == 0, "no role, no rollback"
    box.run_line("as ana")
    box.run_line("click Roll back")
    assert serving(box) == {"wa-backend-00002": 100}
    assert box.runtime.deps.store.incidents.incident(record.id).state == "mitigated"


def test_manual_rollback_attaches_to_the_open_incident(box: Sandbox) -> None:
    answer = alert(box)  # healthy numbers: no automatic action
    box.run_line("as ana")
    box.run_line("/rollback wa-backend")
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert record.state == "mitigated" and record.operation_id
    assert len(box.emulator.slack.files()) == 1


# -- lifecycle ---------------------------------------------------------------------------------


def test_closed_alert_resolves_and_duplicates_are_one_incident(box: Sandbox) -> None:
    first = alert(box)
    again = alert(box)
    assert again == {"incident": first["incident"], "status": "duplicate"}
    assert len(box.runtime.deps.store.incidents.open_incidents()) == 1
    cards = [
        m
        for m in box.emulator.slack.messages("C0INCIDENTS")
        if "Incident" in m["text"] or "spike" in m["text"]
    ]
    assert len(cards) == 1
    closed = alert(box, state="closed")
    assert closed["status"] == "closed"
    record = box.runtime.deps.store.incidents.incident(first["incident"])
    assert record.state == "resolved" and record.resolved_at is not None
    assert "Resolved" in card_text(box, record.message_ts)
    kinds = [e.kind for e in box.runtime.deps.store.journal.timeline(record.id)]
    assert kinds[0] == "alert_received" and kinds[-1] == "alert_closed"


def test_console_test_payload_with_upper_case_state_and_string_documentation(box: Sandbox) -> None:
    answer = alert(box, state="open", incident_id="0.console-test", documentation="just a string")
    payload = json.loads(alert_payload(box.emulator, SERVICE, "open", "0.console-test-2"))
    payload["incident"]["state"] = "OPEN"
    response = box.post_alert(json.dumps(payload))
    assert response.status_code == 200 and response.json()["status"] == "created"
    assert answer["status"] == "created"


def test_unmanaged_service_is_posted_with_no_action(box: Sandbox) -> None:
    payload = json.loads(alert_payload(box.emulator, SERVICE, "open", "0.other"))
    payload["incident"]["resource"]["labels"]["service_name"] = "billing-api"
    response = box.post_alert(json.dumps(payload))
    box.runtime.engine.wait_idle()
    assert response.json()["status"] == "unmanaged"
    text = json.dumps(box.emulator.slack.messages("C0INCIDENTS")[-1]["blocks"])
    assert "not managed by Runback" in text and len(patches(box)) == 0


def test_acknowledge_and_resolve_buttons(box: Sandbox) -> None:
    answer = alert(box)
    box.run_line("as pablo")
    box.run_line("click Acknowledge")
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert record.data["acknowledged_by"] == ["U0PABLO"]
    assert "On it: <@U0PABLO>" in card_text(box, record.message_ts)
    box.run_line("click Observe")  # a developer may not start an observation
    assert box.runtime.deps.store.incidents.incident(record.id).observe_until is None
    box.run_line("as ana")
    box.run_line("/rollback wa-backend")
    box.run_line("as pablo")
    box.run_line("click Resolve")
    assert box.runtime.deps.store.incidents.incident(record.id).state == "mitigated", (
        "pablo may not"
    )
    box.run_line("as luis")
    box.run_line("click Resolve")
    assert box.runtime.deps.store.incidents.incident(record.id).state == "resolved"


def test_open_incidents_are_listed(box: Sandbox) -> None:
    alert(box)
    output = "\n".join(box.run_line("/ops incidents"))
    assert "`wa-backend` — *Open*:" in output


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_missing_or_wrong_token_is_401_and_nothing_else(box: Sandbox, token: str | None) -> None:
    url = box.bot_url.replace("/slack/events", "/alerts/monitoring")
    params = {} if token is None else {"token": token}
    body = alert_payload(box.emulator, SERVICE, "open", "0.x")
    response = box.http.post(url, params=params, data=body, timeout=5)
    assert response.status_code == 401
    assert box.runtime.deps.store.incidents.open_incidents() == []
    assert box.emulator.slack.messages() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        (b"{}", "incident"),
        (json.dumps({"incident": {"incident_id": "x", "state": "burning"}}).encode(), "state"),
        (json.dumps({"incident": {"state": "open"}}).encode(), "incident_id"),
        (
            json.dumps(
                {"incident": {"incident_id": "x", "state": "open", "started_at": "yesterday"}}
            ).encode(),
            "started_at",
        ),
        (
            json.dumps({"incident": {"incident_id": "x" * 300, "state": "open"}}).encode(),
            "incident_id",
        ),
        (b"x" * 70_000, "too large"),
    ],
)
def test_malformed_payloads_are_400_with_a_reason(box: Sandbox, body: bytes, reason: str) -> None:
    url = box.bot_url.replace("/slack/events", "/alerts/monitoring")
    response = box.http.post(url, params={"token": box.alert_token}, data=body, timeout=5)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert box.runtime.deps.store.incidents.open_incidents() == []
    assert box.emulator.slack.messages() == []


def test_hostile_alert_text_is_shown_not_executed(box: Sandbox) -> None:
    answer = alert(
        box,
        summary="<!channel> deploy <https://evil.example|now> & relax",
        policy_name="<!here> policy",
    )
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    text = card_text(box, record.message_ts)
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
    assert "<https://evil" not in text and "<!here>" not in text


def test_non_https_alert_link_is_dropped(box: Sandbox) -> None:
    answer = alert(box, url="javascript:alert(1)")
    record = box.runtime.deps.store.incidents.incident(answer["incident"])
    assert "javascript" not in card_text(box, record.message_ts)


# -- when the automatic rollback cannot run, or fails ---------------------------------------------


def test_automatic_rollback_blocked_by_a_rollback_moving_traffic(box: Sandbox) -> None:
    bad_for(box, error_rate=0.09)
    box.emulator.cloudrun.operation_delay_s = 2.0
    box.run_line("as ana")
    box.post(box.slash_body("/rollback wa-backend manual, before the alert"))
    store = box.runtime.deps.store

    def shifting() -> bool:
        holder = store.operations.lock_holder(SERVICE)
        return holder is not None and holder.state == "shifting"

    deadline = time.monotonic() + 20
    while not shifting():
        assert time.monotonic() < deadline, "the manual rollback never started shifting"
        time.sleep(0.02)
    manual = store.operations.lock_holder(SERVICE)
    answer = alert(box)  # waits until everything is idle: the manual rollback is over too
    record = store.incidents.incident(answer["incident"])
    assert len(patches(box)) == 1, "the automatic rollback did not start a second operation"
    events = [e.kind for e in store.journal.timeline(record.id)]
    assert "rollback_blocked" in events
    assert record.data["rollback_blocked"] == "error.busy"
    assert record.operation_id == manual.operation_id
    assert record.state == "mitigated", "the rollback that held the lock mitigated it"
    assert serving(box) == {"wa-backend-00002": 100}


def test_incident_whose_rollback_fails_stays_open_and_can_be_retried(box: Sandbox) -> None:
    bad_for(box, error_rate=0.09)
    box.emulator.router.faults.add(Fault("run.services.patch", 503, times=None))
    answer = alert(box)
    store = box.runtime.deps.store
    record = store.incidents.incident(answer["incident"])
    operation = store.operations.operation(record.operation_id)
    assert operation.state == "failed" and serving(box) == {BAD: 100}
    assert record.state == "open"
    assert "rollback_failed" in [e.kind for e in store.journal.timeline(record.id)]
    assert store.operations.lock_holder(SERVICE) is None
    assert any("FAILED" in m["text"] for m in box.emulator.slack.messages("C0INCIDENTS"))

    box.emulator.router.faults.clear()
    box.run_line("as ana")
    box.run_line("click Roll back")  # the incident card still offers the on-call their button
    assert serving(box) == {"wa-backend-00002": 100}
    assert store.incidents.incident(record.id).state == "mitigated"


def test_observe_click_starts_the_observation_window(box: Sandbox) -> None:
    answer = alert(box)  # healthy numbers: no action, an Observe button
    store = box.runtime.deps.store
    assert store.incidents.incident(answer["incident"]).observe_until is None
    box.run_line("as ana")
    box.run_line("click Observe")
    record = store.incidents.incident(answer["incident"])
    assert record.verdict == "observe" and record.observe_until is not None
    # the observation covers Monitoring's next five minutes after the newest one judged
    judged = datetime.fromisoformat(record.data["judged"]["until"])
    assert record.observe_until - judged == timedelta(minutes=5)
    started = [e for e in store.journal.timeline(record.id) if e.kind == "observe_started"]
    assert started and started[-1].actor == "U0ANA"
    assert "Observing Monitoring's minutes until" in card_text(box, record.message_ts)
    assert len(patches(box)) == 0
    audit = store.journal.audit()[-1]
    assert (audit.action, audit.actor) == ("incident.observe", "U0ANA")


def test_the_cards_ts_written_between_a_checks_read_and_its_claim_does_not_lose_the_check(
    box: Sandbox,
) -> None:
    """The courier stores a new incident card's ts (a write to the incident) while the alert's
    check has read the incident and not yet claimed it: the check claims it again on what the
    incident is now, instead of taking the lost claim for another check's (the incident then
    went unjudged until a later tick)."""
    bad_for(box, error_rate=0.03)
    store = box.runtime.deps.store
    answer = alert(box)
    store.incidents.update_incident(answer["incident"], box.clock.now(), data={})  # unchecked

    class CardPostedMeanwhile(type(store.incidents)):  # the real repository, one write between
        reads = 0

        def incident(self, incident_id: str):  # type: ignore[no-untyped-def]
            record = super().incident(incident_id)
            CardPostedMeanwhile.reads += 1
            if CardPostedMeanwhile.reads == 1:
                super().update_incident(incident_id, box.clock.now(), message_ts="1.000200")
            return record

    store.incidents = CardPostedMeanwhile(store._sessions)
    assert incidents.judge_incident(box.runtime.deps, answer["incident"]) is None  # observe
    record = store.incidents.incident(answer["incident"])
    assert record.data.get("checked_at") and record.verdict == "observe"
    assert record.message_ts == "1.000200"
