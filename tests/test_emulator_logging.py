"""The Cloud Logging emulator, driven by the real google-cloud-logging client (REST)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import logging as cloud_logging
from google.cloud.logging import ASCENDING, DESCENDING, Resource

from bot.sandbox.emulator.server import Emulator

PROJECT = "demo"
LOG = f"projects/{PROJECT}/logs/app"
DIAGNOSTIC = "logging.googleapis.com/diagnostic"


def client(emulator: Emulator) -> cloud_logging.Client:
    return cloud_logging.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        _use_grpc=False,
        client_options={"api_endpoint": emulator.url},
    )


def seed_app_logs(emulator: Emulator) -> None:
    base = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    rows = [
        ("INFO", "wa-backend", "wa-backend-00002-cur", 0),
        ("ERROR", "wa-backend", "wa-backend-00002-cur", 1),
        ("CRITICAL", "wa-backend", "wa-backend-00001-old", 2),
        ("ERROR", "billing", "billing-00001-aaa", 3),
    ]
    for severity, service, revision, minute in rows:
        emulator.logging.add_entry(
            {
                "logName": LOG,
                "resource": {
                    "type": "cloud_run_revision",
                    "labels": {"service_name": service, "revision_name": revision},
                },
                "severity": severity,
                "timestamp": (base + timedelta(minutes=minute)).isoformat(),
                "jsonPayload": {"message": f"{severity.lower()} in {service}", "minute": minute},
            }
        )


def payloads(entries: Any) -> list[Any]:
    return [entry.payload for entry in entries]


def without_diagnostics(entries: Any) -> list[Any]:
    """Drop the library's once-per-process instrumentation entry."""
    return [
        e for e in entries if DIAGNOSTIC not in (e.payload if isinstance(e.payload, dict) else {})
    ]


def test_write_then_list_through_the_client(emulator: Emulator) -> None:
    logger = client(emulator).logger("app", resource=Resource(type="global", labels={}))
    logger.log_struct({"event": "deploy", "service": "wa-backend"}, severity="NOTICE")
    logger.log_text("plain text line", severity="WARNING")
    listed = without_diagnostics(client(emulator).list_entries(filter_=f'logName="{LOG}"'))
    assert payloads(listed) == [{"event": "deploy", "service": "wa-backend"}, "plain text line"]
    assert [e.severity for e in listed] == ["NOTICE", "WARNING"]
    stored = emulator.logging.entries()
    assert stored and all(e["timestamp"].endswith("Z") and e["insertId"] for e in stored)
    assert emulator.router.calls.list("logging.entries.write")


def test_filters_on_severity_payload_and_resource_labels(emulator: Emulator) -> None:
    seed_app_logs(emulator)
    logs = client(emulator)
    errors = logs.list_entries(
        filter_="severity>=ERROR AND resource.labels.service_name=wa-backend"
    )
    assert [p["minute"] for p in payloads(errors)] == [1, 2]
    by_revision = logs.list_entries(
        filter_='resource.labels.revision_name="wa-backend-00001-old" AND jsonPayload.minute>=2'
    )
    assert [p["minute"] for p in payloads(by_revision)] == [2]
    contains = logs.list_entries(filter_='jsonPayload.message:"IN BILLING"')
    assert [p["minute"] for p in payloads(contains)] == [3]
    assert list(logs.list_entries(resource_names=["projects/other"])) == []


def test_timestamp_filter_order_and_paging(emulator: Emulator) -> None:
    seed_app_logs(emulator)
    logs = client(emulator)
    newest = logs.list_entries(filter_='timestamp>="2030-01-01T12:01:00Z"', order_by=DESCENDING)
    assert [p["minute"] for p in payloads(newest)] == [3, 2, 1]
    emulator.router.calls.clear()
    paged = logs.list_entries(filter_=f"logName={LOG}", order_by=ASCENDING, page_size=3)
    assert [p["minute"] for p in payloads(paged)] == [0, 1, 2, 3]
    assert len(emulator.router.calls.list("logging.entries.list")) == 2
    limited = logs.list_entries(filter_=f"logName={LOG}", max_results=2)
    assert [p["minute"] for p in payloads(limited)] == [0, 1]


def test_default_24h_window_hides_old_entries(emulator: Emulator) -> None:
    emulator.logging.add_entry(
        {
            "logName": LOG,
            "resource": {"type": "global"},
            "timestamp": "2001-01-01T00:00:00Z",
            "textPayload": "ancient",
        }
    )
    assert list(client(emulator).list_entries()) == []


def test_invalid_entries_and_filters_are_400(emulator: Emulator) -> None:
    write = f"{emulator.url}/v2/entries:write"
    bogus = {"entries": [{"logName": LOG, "resource": {"type": "global"}, "bogusField": 1}]}
    assert requests.post(write, json=bogus, timeout=5).status_code == 400
    no_name = {"entries": [{"resource": {"type": "global"}, "textPayload": "x"}]}
    assert requests.post(write, json=no_name, timeout=5).status_code == 400
    listing = f"{emulator.url}/v2/entries:list"
    unsupported = {"resourceNames": ["projects/demo"], "filter": "severity>=ERROR OR x=1"}
    assert requests.post(listing, json=unsupported, timeout=5).status_code == 400
    assert requests.post(listing, json={"filter": "x=1"}, timeout=5).status_code == 400
    with pytest.raises(ValueError, match="Invalid"):
        emulator.logging.add_entry(
            {"logName": LOG, "resource": {"type": "global"}, "severity": "LOUD"}
        )
    assert emulator.logging.entries() == []


def test_request_level_defaults_and_dry_run(emulator: Emulator) -> None:
    write = f"{emulator.url}/v2/entries:write"
    body = {
        "logName": LOG,
        "resource": {"type": "global"},
        "labels": {"env": "sandbox"},
        "entries": [{"textPayload": "one", "labels": {"k": "v"}}],
    }
    assert requests.post(write, json=body, timeout=5).status_code == 200
    assert requests.post(write, json={**body, "dryRun": True}, timeout=5).status_code == 200
    stored = requests.get(f"{emulator.url}/_emulator/logs", timeout=5).json()
    assert len(stored) == 1
    assert stored[0]["labels"] == {"env": "sandbox", "k": "v"}
    assert stored[0]["logName"] == LOG and stored[0]["severity"] == "DEFAULT"


def test_the_adapter_reads_what_it_needs_in_one_page(emulator: Emulator) -> None:
    """Cloud Logging answers 50 entries a page unless asked for more; entries.list is quota'd
    per project and minute, so the postmortem's 500 newest errors come in one call."""
    from bot.gcp.logs import CloudLoggingAudit

    at = datetime.now(UTC).replace(microsecond=0)
    for i in range(120):
        emulator.logging.add_entry(
            {
                "logName": "projects/p/logs/run.googleapis.com%2Fstderr",
                "resource": {"type": "cloud_run_revision", "labels": {"service_name": "svc"}},
                "timestamp": (at - timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                "textPayload": f"ERROR {i}",
            }
        )
    reader = CloudLoggingAudit(project="p", emulator_host=emulator.host)
    found = reader.list_entries('resource.labels.service_name="svc"', max_results=500)
    assert len(found) == 120
    calls = emulator.router.calls.list("logging.entries.list")
    assert len(calls) == 1 and calls[0].body["pageSize"] == 500
