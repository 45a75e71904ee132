"""The Monitoring webhook against hostile and real-world payloads: numbers out of range, deep
nesting, long display strings, alerts about another project's service and alerts whose policy
aggregated the service label away."""

from __future__ import annotations

import json

import pytest

from bot.sandbox.console import Sandbox
from bot.sandbox.seed import alert_payload

SERVICE = "wa-backend"


def payload(box: Sandbox, incident_id: str = "0.intake-1") -> dict:
    return json.loads(alert_payload(box.emulator, SERVICE, "open", incident_id))


def nothing_happened(box: Sandbox) -> None:
    box.runtime.engine.wait_idle()
    assert box.runtime.deps.store.incidents.open_incidents() == []
    assert box.emulator.slack.messages() == []
    assert box.emulator.router.calls.list("run.services.patch") == []


def incident_text(box: Sandbox) -> str:
    box.runtime.engine.wait_idle()
    messages = box.emulator.slack.messages("C0INCIDENTS")
    assert len(messages) == 1, "one message in #incidents, for a person"
    return json.dumps(messages[0]["blocks"], ensure_ascii=False)


@pytest.mark.parametrize(
    "number", ["1e20", "-1e20", "1e400", "Infinity", "-Infinity", "NaN", "true"]
)
@pytest.mark.parametrize("field", ["started_at", "ended_at", "observed_value"])
def test_out_of_range_numbers_are_a_400(sandbox: Sandbox, field: str, number: str) -> None:
    data = payload(sandbox)
    data["incident"][field] = "__number__"
    body = json.dumps(data).replace('"__number__"', number)
    response = sandbox.post_alert(body)
    if field == "observed_value" and number in ("1e20", "-1e20", "true"):
        assert response.status_code == 200, "a big but finite value is just a value"
        return
    assert response.status_code == 400, response.text
    assert field in response.text or "out of range" in response.text or "number" in response.text
    nothing_happened(sandbox)


@pytest.mark.parametrize("where", ["top", "documentation", "labels", "summary"])
def test_deeply_nested_json_is_a_400(sandbox: Sandbox, where: str) -> None:
    deep = "[" * 5000 + "]" * 5000 if where == "top" else "[" * 900 + "]" * 900
    body = json.dumps(payload(sandbox))
    if where == "documentation":
        body = body.replace('"documentation": {', f'"documentation": {{"content": {deep}, "x": ', 1)
    elif where == "labels":
        body = body.replace('"labels": {"service_name"', f'"labels": {{"deep": {deep}, "s"', 1)
    elif where == "summary":
        body = body.replace('"summary": ', f'"summary": {deep}, "was": ', 1)
    else:
        body = deep
    response = sandbox.post_alert(body)
    assert response.status_code == 400, response.text
    nothing_happened(sandbox)


def test_long_display_strings_are_cut_not_refused(sandbox: Sandbox) -> None:
    data = payload(sandbox)
    data["incident"]["summary"] = "S" * 20_000
    data["incident"]["policy_name"] = "P" * 2_000
    data["incident"]["condition_name"] = "C" * 2_000
    data["incident"]["metric"]["displayName"] = "M" * 2_000
    response = sandbox.post_alert(json.dumps(data))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "created"
    record = sandbox.runtime.deps.store.incidents.incident(response.json()["incident"])
    assert record.alert["summary"] == "S" * 4000
    assert record.alert["policy_name"] == "P" * 256
    assert "SSSS" in incident_text(sandbox)


def test_nul_characters_are_dropped(sandbox: Sandbox) -> None:
    data = payload(sandbox, "0.nul\u0000id")
    data["incident"]["summary"] = "bad\u0000summary"
    response = sandbox.post_alert(json.dumps(data))
    assert response.status_code == 200, response.text
    record = sandbox.runtime.deps.store.incidents.incident(response.json()["incident"])
    assert record.external_id == "0.nulid" and record.alert["summary"] == "badsummary"


@pytest.mark.parametrize(
    ("label", "value"), [("project_id", "someone-elses-project"), ("location", "europe-west1")]
)
def test_a_service_of_the_same_name_elsewhere_is_not_managed(
    sandbox: Sandbox, label: str, value: str
) -> None:
    sandbox.emulator.cloudrun.set_behaviour("wa-backend-00003", error_rate=0.5)
    data = payload(sandbox)
    data["incident"]["resource"]["labels"][label] = value
    response = sandbox.post_alert(json.dumps(data))
    assert response.status_code == 200 and response.json()["status"] == "unmanaged"
    text = incident_text(sandbox)
    assert "is not managed by Runback" in text and value in text
    assert sandbox.emulator.router.calls.list("run.services.patch") == [], "no rollback"


def test_the_same_project_and_location_is_managed(sandbox: Sandbox) -> None:
    response = sandbox.post_alert(json.dumps(payload(sandbox)))
    assert response.json()["status"] == "created"


def test_an_alert_without_a_service_label_goes_to_a_person(sandbox: Sandbox) -> None:
    data = payload(sandbox)
    data["incident"]["resource"]["labels"] = {"project_id": "runback-sandbox"}
    response = sandbox.post_alert(json.dumps(data))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "unidentified"
    text = incident_text(sandbox)
    assert "cannot tell which service" in text and "service_name" in text
    assert '"actions"' not in text, "no button acts on an unknown service"
    assert sandbox.emulator.router.calls.list("run.services.patch") == []
    listed = "\n".join(sandbox.run_line("/ops incidents"))
    assert "`?`" in listed, "listed as open, its service unknown"


def test_an_alert_without_a_service_label_is_said_in_spanish(sandbox: Sandbox) -> None:
    from bot.render import Renderer

    sandbox.runtime.deps.renderer = Renderer("es")
    data = payload(sandbox)
    data["incident"]["resource"]["labels"] = {}
    assert sandbox.post_alert(json.dumps(data)).json()["status"] == "unidentified"
    assert "no se sabe a qué servicio" in incident_text(sandbox)


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("https://console.cloud.google.com/monitoring/alerting/incidents/0.x", True),
        ("https://console.cloud.google.com.evil.example/monitoring", False),
        ("https://console.cloud.google.com@evil.example/monitoring", False),
        ("https://evil.example/console.cloud.google.com/", False),
        ("http://console.cloud.google.com/monitoring", False),
    ],
)
def test_only_a_cloud_console_link_is_shown_as_one(
    sandbox: Sandbox, url: str, linked: bool
) -> None:
    data = payload(sandbox)
    data["incident"]["url"] = url
    assert sandbox.post_alert(json.dumps(data)).status_code == 200
    text = incident_text(sandbox)
    assert ("Open the incident in Cloud Monitoring" in text) is linked
    assert ("evil.example" in text) is False


# -- alerts whose policy aggregated the location away ----------------------------------------


def test_the_seeded_policy_aggregates_location_away_and_the_alert_is_still_managed(
    sandbox: Sandbox,
) -> None:
    data = payload(sandbox)
    labels = data["incident"]["resource"]["labels"]
    assert labels == {"service_name": SERVICE, "revision_name": "wa-backend-00003"}, (
        "only what the policy groups by, as Cloud Monitoring sends it"
    )
    response = sandbox.post_alert(json.dumps(data))
    assert response.json()["status"] == "created", "project (the scoping one) and name match"
    record = sandbox.runtime.deps.store.incidents.incident(response.json()["incident"])
    assert record.managed and record.alert["project_id"] == "runback-sandbox"


def test_a_revision_that_is_not_the_services_own_makes_it_a_question_for_a_person(
    sandbox: Sandbox,
) -> None:
    sandbox.emulator.cloudrun.set_behaviour("wa-backend-00003", error_rate=0.5)
    data = payload(sandbox)
    data["incident"]["resource"]["labels"]["revision_name"] = "wa-backend-00007-eur"
    response = sandbox.post_alert(json.dumps(data))
    assert response.status_code == 200 and response.json()["status"] == "ambiguous"
    text = incident_text(sandbox)
    assert "may run in more than one region" in text and "`location`" in text
    assert '"actions"' not in text, "no button acts on a service Runback cannot tell"
    assert sandbox.emulator.router.calls.list("run.services.patch") == [], "no rollback"


def test_without_location_or_revision_a_namesake_in_another_known_region_is_ambiguous() -> None:
    from tests.conftest import sandbox_config

    config = sandbox_config()
    staging = config.services[1].model_copy(update={"region": "europe-west1"})
    config = config.model_copy(update={"services": (config.services[0], staging)})
    box = Sandbox(config, retry_deadline_s=1.5)
    try:
        data = payload(box)
        del data["incident"]["resource"]["labels"]["revision_name"]
        assert box.post_alert(json.dumps(data)).json()["status"] == "created", "no namesake yet"
        namesake = [{"name": "wa-backend-00001-eur", "image": "europe-docker.pkg.dev/x/wa:1"}]
        box.emulator.cloudrun.seed_service("runback-sandbox", "europe-west1", SERVICE, namesake)
        data["incident"]["incident_id"] = "0.namesake"
        answer = box.post_alert(json.dumps(data)).json()
        assert answer["status"] == "ambiguous", answer
    finally:
        box.close()


def test_without_a_project_label_the_scoping_project_must_be_the_services(
    sandbox: Sandbox,
) -> None:
    data = payload(sandbox)
    data["incident"]["scoping_project_id"] = "central-monitoring"
    response = sandbox.post_alert(json.dumps(data))
    assert response.json()["status"] == "unmanaged"
    assert "central-monitoring" in incident_text(sandbox)


# -- what the policy measured: its value, and the window it measured it over -------------------


def _real_shaped(condition: object) -> bytes:
    """A 1.2 payload with the policy's ``condition`` as Monitoring sends it (camelCase)."""
    incident = {
        "incident_id": "0.window",
        "state": "open",
        "started_at": 1764270000,
        "observed_value": "0.082",
        "threshold_value": "0.01",
        "condition": condition,
    }
    return json.dumps({"version": "1.2", "incident": incident}).encode()


@pytest.mark.parametrize(
    ("condition", "window_s", "duration_s"),
    [
        (
            {
                "name": "projects/p/alertPolicies/1/conditions/2",
                "displayName": "5xx ratio above 1%",
                "conditionThreshold": {
                    "aggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_RATE"}],
                    "comparison": "COMPARISON_GT",
                    "thresholdValue": 0.01,
                    "duration": "300s",
                },
            },
            60.0,
            300.0,
        ),
        ({"conditionThreshold": {"aggregations": [{"alignmentPeriod": "1.5s"}]}}, 1.5, None),
        ({"conditionThreshold": {"aggregations": "60s", "duration": "soon"}}, None, None),
        ({"conditionAbsent": {"duration": "120s"}}, None, None),
        ("not an object", None, None),
        (None, None, None),
    ],
)
def test_the_alert_says_what_its_value_was_measured_over(
    condition: object, window_s: float | None, duration_s: float | None
) -> None:
    from bot.gcp.alerts import parse_alert

    alert = parse_alert(_real_shaped(condition))
    assert alert.observed_value == "0.082"
    assert (alert.condition.window_s, alert.condition.duration_s) == (window_s, duration_s)


def test_an_incident_keeps_the_alerts_measurement_window(sandbox: Sandbox) -> None:
    assert sandbox.post_alert(json.dumps(payload(sandbox))).status_code == 200
    sandbox.runtime.engine.wait_idle()
    (record,) = sandbox.runtime.deps.store.incidents.open_incidents()
    assert (record.alert["window_s"], record.alert["duration_s"]) == (60.0, 60.0)
