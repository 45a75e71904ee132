"""Alert policies and notification channels: the Monitoring emulator through the real
AlertPolicyServiceClient and NotificationChannelServiceClient over a real gRPC socket, and the
doctor's adapter (bot.gcp.alert_policies) on top of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
import requests
from google.api_core import exceptions
from google.cloud import monitoring_v3

from bot.config import load_config
from bot.gcp.alert_policies import (
    AlertPolicy,
    CloudAlertPolicies,
    NotificationChannel,
    watches,
    webhook_problem,
)
from bot.ports import MetricsError
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import seed

REPO = Path(__file__).resolve().parents[1]
PROJECT = "runback-sandbox"
POLICIES = "monitoring.alertPolicies.list"
CHANNELS = "monitoring.notificationChannels.list"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = Emulator().start()
    try:
        seed(emulator, load_config(REPO / "app.yaml"))
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def channel(emu: Emulator) -> Iterator[grpc.Channel]:
    opened = grpc.insecure_channel(emu.monitoring.host)
    yield opened
    opened.close()


def policy_client(channel: grpc.Channel) -> monitoring_v3.AlertPolicyServiceClient:
    kind = monitoring_v3.AlertPolicyServiceClient
    return kind(transport=kind.get_transport_class("grpc")(channel=channel))


def channel_client(channel: grpc.Channel) -> monitoring_v3.NotificationChannelServiceClient:
    kind = monitoring_v3.NotificationChannelServiceClient
    return kind(transport=kind.get_transport_class("grpc")(channel=channel))


def list_policies(channel: grpc.Channel, **request: object) -> list[monitoring_v3.AlertPolicy]:
    pager = policy_client(channel).list_alert_policies(
        request={"name": f"projects/{PROJECT}", **request}, retry=None, timeout=5
    )
    return list(pager)


def test_the_seed_gives_each_service_an_error_rate_and_a_p95_policy_to_runback(
    emu: Emulator, channel: grpc.Channel
) -> None:
    policies = list_policies(channel)
    assert sorted(p.display_name for p in policies) == [
        "wa-backend P95 > 2000 ms",
        "wa-backend error rate > 1%",
        "wa-backend-staging P95 > 2000 ms",
        "wa-backend-staging error rate > 1%",
    ]
    assert all(p.name.startswith(f"projects/{PROJECT}/alertPolicies/") for p in policies)
    error_rate = next(p for p in policies if p.display_name == "wa-backend error rate > 1%")
    threshold = error_rate.conditions[0].condition_threshold
    assert 'resource.labels.service_name = "wa-backend"' in threshold.filter
    assert 'metric.labels.response_code_class = "5xx"' in threshold.filter
    assert "response_code_class" not in threshold.denominator_filter
    assert threshold.threshold_value == pytest.approx(0.01)
    assert "resource.label.service_name" in threshold.aggregations[0].group_by_fields
    assert error_rate.enabled
    [webhook] = channel_client(channel).list_notification_channels(
        request={"name": f"projects/{PROJECT}"}, retry=None, timeout=5
    )
    assert webhook.type_ == "webhook_tokenauth"
    assert urlsplit(webhook.labels["url"]).path == "/alerts/monitoring"
    assert all(list(p.notification_channels) == [webhook.name] for p in policies)


def test_paging_follows_tokens_and_other_projects_are_empty(
    emu: Emulator, channel: grpc.Channel
) -> None:
    client = policy_client(channel)
    first = client.list_alert_policies(
        request={"name": f"projects/{PROJECT}", "page_size": 3}, retry=None, timeout=5
    )
    assert first.total_size == 4 and first.next_page_token
    assert len(list(first)) == 4
    assert [len(c.body.get("page_token", "")) > 0 for c in emu.router.calls.list(POLICIES)] == [
        False,
        True,
    ]
    assert list_policies(channel, name="projects/elsewhere") == []


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"name": "runback-sandbox"}, exceptions.InvalidArgument),
        ({"name": f"projects/{PROJECT}/alertPolicies/1"}, exceptions.InvalidArgument),
        ({"page_token": "not-a-token"}, exceptions.InvalidArgument),
        ({"filter": 'display_name = "x"'}, exceptions.MethodNotImplemented),
    ],
)
def test_bad_requests_are_refused(
    channel: grpc.Channel, request_: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        list_policies(channel, **request_)


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, exceptions.PermissionDenied), (503, exceptions.ServiceUnavailable)],
)
def test_faults_map_to_grpc_status_and_calls_are_recorded(
    emu: Emulator, channel: grpc.Channel, status: int, error: type[Exception]
) -> None:
    emu.router.faults.add(Fault(POLICIES, status))
    emu.router.faults.add(Fault(CHANNELS, status))
    with pytest.raises(error):
        list_policies(channel)
    with pytest.raises(error):
        client = channel_client(channel)
        list(client.list_notification_channels(name=f"projects/{PROJECT}", retry=None, timeout=5))
    assert len(list_policies(channel)) == 4  # the fault was used up
    [call, _] = emu.router.calls.list(POLICIES)
    assert call.path == "/google.monitoring.v3.AlertPolicyService/ListAlertPolicies"
    assert call.body["name"] == f"projects/{PROJECT}"
    [call] = emu.router.calls.list(CHANNELS)
    assert call.path == "/google.monitoring.v3.NotificationChannelService/ListNotificationChannels"


def test_the_control_api_adds_lists_and_deletes_policies(
    emu: Emulator, channel: grpc.Channel
) -> None:
    url = f"{emu.url}/_emulator/monitoring/alertPolicies"
    policy = {
        "displayName": "wa-backend errors in the logs",
        "conditions": [
            {
                "displayName": "error lines",
                "conditionMatchedLog": {
                    "filter": 'resource.labels.service_name="wa-backend" AND severity>=ERROR'
                },
            }
        ],
        "combiner": 1,  # OR, as an integer enum
        "enabled": True,
    }
    added = requests.post(url, json={"project": PROJECT, "policy": policy}, timeout=5)
    assert added.status_code == 200 and added.json()["name"].startswith(f"projects/{PROJECT}/")
    assert "wa-backend errors in the logs" in {p.display_name for p in list_policies(channel)}
    listed = requests.get(url, params={"project": PROJECT}, timeout=5).json()
    assert len(listed) == 5 and "displayName" in listed[0]  # camelCase JSON
    wrong = requests.post(url, json={"project": PROJECT, "policy": {"nope": 1}}, timeout=5)
    assert wrong.status_code == 400
    gone = requests.delete(url, params={"project": PROJECT, "service": "wa-backend"}, timeout=5)
    assert gone.json() == {"removed": 3}
    assert {p.display_name for p in list_policies(channel)} == {
        "wa-backend-staging P95 > 2000 ms",
        "wa-backend-staging error rate > 1%",
    }


# -- the adapter --------------------------------------------------------------------------------


def test_the_adapter_reads_every_page_and_names_refusals(emu: Emulator) -> None:
    for number in range(150):  # more than one default page (100)
        extra = monitoring_v3.AlertPolicy(display_name=f"noise {number}", enabled=True)
        emu.monitoring.alerts.add_policy(PROJECT, extra)
    reader = CloudAlertPolicies(emu.monitoring.host, retry_deadline_s=1.0)
    policies = reader.policies(PROJECT)
    assert len(policies) == 154
    assert len(emu.router.calls.list(POLICIES)) == 2
    channels = reader.channels(PROJECT)
    mine = [p for p in policies if watches(p, "wa-backend")]
    assert len(mine) == 2
    assert all(webhook_problem(channels[c]) is None for p in mine for c in p.notification_channels)
    emu.router.faults.add(Fault(POLICIES, 403))
    with pytest.raises(MetricsError) as denied:
        reader.policies(PROJECT)
    assert denied.value.reason == "permission_denied"
    emu.router.faults.add(Fault(POLICIES, 503, times=None))
    with pytest.raises(MetricsError) as down:
        reader.policies(PROJECT)
    assert down.value.reason == "unavailable"


def policy(*queries: str) -> AlertPolicy:
    return AlertPolicy("projects/p/alertPolicies/1", "p", True, queries, ())


@pytest.mark.parametrize(
    ("query", "watched"),
    [
        ('resource.labels.service_name = "wa-backend"', True),
        ('resource.label.service_name="wa-backend"', True),  # the singular form is accepted too
        ("fetch cloud_run_revision | filter resource.service_name == 'wa-backend'", True),
        ('rate(run_googleapis_com:request_count{service_name="wa-backend"}[1m]) > 1', True),
        ('resource.labels.service_name = "wa-backend-staging"', False),
        ('resource.labels.service_name != "wa-backend"', False),
        ('resource.labels.revision_name = "wa-backend-00003"', False),
    ],
)
def test_which_policies_watch_a_service(query: str, watched: bool) -> None:
    assert watches(policy(query), "wa-backend") is watched


@pytest.mark.parametrize(
    ("kind", "url", "enabled", "problem"),
    [
        ("webhook_tokenauth", "https://r.run.app/alerts/monitoring?token=abc", True, None),
        ("webhook_tokenauth", "https://r.run.app/alerts/monitoring", True, "no_token"),
        (
            "webhook_tokenauth",
            "https://r.run.app/alerts/monitoring?token=abc",
            False,
            "not_runback",
        ),
        ("webhook_tokenauth", "https://elsewhere.example/hook?token=abc", True, "not_runback"),
        ("email", "", True, "not_runback"),
    ],
)
def test_which_channels_reach_runback(
    kind: str, url: str, enabled: bool, problem: str | None
) -> None:
    channel = NotificationChannel("projects/p/notificationChannels/1", kind, url, enabled)
    assert webhook_problem(channel) == problem


@pytest.mark.parametrize(
    ("group_by", "carried"),
    [
        (["resource.label.service_name"], {"service_name"}),
        (
            [
                "resource.labels.service_name",
                "resource.labels.location",
                "resource.label.project_id",
            ],
            {"service_name", "location", "project_id"},
        ),
        ([], set()),
    ],
)
def test_an_alert_carries_only_the_labels_its_policy_groups_by(
    emu: Emulator, group_by: list[str], carried: set[str]
) -> None:
    from bot.gcp.alert_policies import alert_labels
    from bot.sandbox.seed import alert_payload

    emu.monitoring.alerts.remove_policies(PROJECT, "wa-backend")
    policy = monitoring_v3.AlertPolicy(
        display_name="wa-backend 5xx ratio",
        enabled=True,
        conditions=[
            {
                "display_name": "5xx ratio",
                "condition_threshold": {
                    "filter": 'metric.type = "run.googleapis.com/request_count" AND '
                    'resource.labels.service_name = "wa-backend"',
                    "aggregations": [
                        {
                            "alignment_period": {"seconds": 60},
                            "per_series_aligner": "ALIGN_RATE",
                            "cross_series_reducer": "REDUCE_SUM",
                            "group_by_fields": group_by,
                        }
                    ],
                },
            }
        ],
    )
    stored = emu.monitoring.alerts.add_policy(PROJECT, policy)
    incident = json.loads(alert_payload(emu, "wa-backend", "open", "0.labels"))["incident"]
    assert set(incident["resource"]["labels"]) == carried
    assert incident["policy_name"] == "wa-backend 5xx ratio"
    assert set(alert_labels(stored) or ()) == carried, "the doctor reads the same from the policy"


def test_without_a_cross_series_reducer_every_label_is_carried(emu: Emulator) -> None:
    from bot.sandbox.seed import alert_payload

    emu.monitoring.alerts.remove_policies(PROJECT, "wa-backend")
    policy = monitoring_v3.AlertPolicy(
        display_name="wa-backend errors",
        enabled=True,
        conditions=[
            {
                "display_name": "errors",
                "condition_threshold": {
                    "filter": 'metric.type = "run.googleapis.com/request_count" AND '
                    'resource.labels.service_name = "wa-backend"',
                    "aggregations": [
                        {"alignment_period": {"seconds": 60}, "per_series_aligner": "ALIGN_RATE"}
                    ],
                },
            }
        ],
    )
    emu.monitoring.alerts.add_policy(PROJECT, policy)
    incident = json.loads(alert_payload(emu, "wa-backend", "open", "0.all"))["incident"]
    assert incident["resource"]["labels"]["location"] == "us-central1"
    assert incident["resource"]["labels"]["project_id"] == PROJECT
