"""bot.gcp adapters (CloudRunAdmin, HttpProbe, CloudLoggingAudit) against the emulators."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import requests

from bot.gcp.cloudrun import CloudRunAdmin
from bot.gcp.logs import CloudLoggingAudit, LogsUnavailable
from bot.gcp.probe import HttpProbe
from bot.ports import (
    AuditEvent,
    CloudRunError,
    EnvVar,
    EtagConflict,
    ServiceRef,
    TrafficTarget,
)
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator

REF = ServiceRef("demo", "europe-west1", "wa-backend")
OLD, CURRENT = "wa-backend-00001-old", "wa-backend-00002-cur"


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    emulator.cloudrun.seed_service(
        "demo",
        "europe-west1",
        "wa-backend",
        [
            {"name": OLD, "image": "wa:1.0", "age_s": 7200},
            {
                "name": CURRENT,
                "image": "wa:1.1",
                "age_s": 600,
                "env": {
                    "FEATURE_FLAG_NEW_CHECKOUT": "false",
                    "DATABASE_URL": {"secret": "wa-db-url", "version": "3"},
                },
            },
        ],
        {CURRENT: 100},
        tags={"blue": OLD},
    )
    return emulator


def admin(emulator: Emulator, **kwargs: float) -> CloudRunAdmin:
    options = {"retry_deadline_s": 1.5, "initial_backoff_s": 0.05, **kwargs}
    return CloudRunAdmin(emulator.host, **options)


def rollback(cloudrun: CloudRunAdmin, etag: str, revision: str = OLD) -> str:
    return cloudrun.start_traffic_update(REF, [TrafficTarget(revision, 100)], etag)


# -- CloudRunAdmin ----------------------------------------------------------------------------


def test_get_service_maps_traffic_statuses(emu: Emulator) -> None:
    state = admin(emu).get_service(REF)
    assert state.ref == REF and state.etag
    assert state.uri == f"{emu.url}/_svc/wa-backend"
    assert state.latest_ready_revision == CURRENT
    assert state.serving() == {CURRENT: 100}
    blue = next(t for t in state.traffic if t.tag == "blue")
    assert (blue.revision, blue.percent, blue.latest) == (OLD, 0, False)
    assert blue.uri == f"{emu.url}/_svc/wa-backend/_tag/blue"
    assert not state.reconciling


def test_list_revisions_newest_first(emu: Emulator) -> None:
    revisions = admin(emu).list_revisions(REF)
    assert [(r.name, r.image, r.ready) for r in revisions] == [
        (CURRENT, "wa:1.1", True),
        (OLD, "wa:1.0", True),
    ]
    assert revisions[0].created.tzinfo is not None
    assert revisions[0].created > revisions[1].created


def test_revisions_carry_their_environment_plain_and_from_secrets(emu: Emulator) -> None:
    current = admin(emu).get_revision(REF, CURRENT)
    assert current.env == (
        EnvVar("FEATURE_FLAG_NEW_CHECKOUT", value="false"),
        EnvVar("DATABASE_URL", secret="wa-db-url", secret_version="3"),
    )
    assert current.env_value("FEATURE_FLAG_NEW_CHECKOUT") == "false"
    assert current.env_value("DATABASE_URL") is None  # a secret's value is never read here
    assert admin(emu).get_revision(REF, OLD).env == ()


def test_get_revision_reads_the_ready_condition(emu: Emulator) -> None:
    cloudrun = admin(emu)
    assert cloudrun.get_revision(REF, OLD).ready
    answer = requests.post(
        f"{emu.url}/_emulator/revisions/{OLD}/ready",
        json={"ready": False, "message": "Container failed to start and listen on PORT=8080"},
        timeout=5,
    )
    assert answer.status_code == 200
    revision = cloudrun.get_revision(REF, OLD)
    assert (revision.name, revision.image, revision.ready) == (OLD, "wa:1.0", False)
    assert revision.ready_message == "Container failed to start and listen on PORT=8080"
    listed = {r.name: r for r in cloudrun.list_revisions(REF)}
    assert not listed[OLD].ready and listed[CURRENT].ready and listed[CURRENT].ready_message == ""
    assert emu.router.calls.list("run.revisions.get")
    with pytest.raises(CloudRunError) as missing:
        cloudrun.get_revision(REF, "wa-backend-09999")
    assert missing.value.reason == "not_found"
    bad = requests.post(f"{emu.url}/_emulator/revisions/{OLD}/ready", json={}, timeout=5)
    assert bad.status_code == 400


def test_traffic_update_and_wait(emu: Emulator) -> None:
    cloudrun = admin(emu)
    operation = rollback(cloudrun, cloudrun.get_service(REF).etag)
    assert operation.startswith("projects/demo/locations/europe-west1/operations/")
    state = cloudrun.wait_operation(operation, timeout_s=5)
    assert state.ref == REF and state.serving() == {OLD: 100}
    assert emu.cloudrun.traffic("wa-backend") == [{"revision": OLD, "percent": 100, "tag": ""}]
    patch = emu.router.calls.list("run.services.patch")[0]
    assert patch.query["updateMask"] == ["traffic"]
    assert patch.body["traffic"] == [{"type": 2, "revision": OLD, "percent": 100}]


def test_operation_delay_is_waited_for(emu: Emulator) -> None:
    emu.cloudrun.operation_delay_s = 0.3
    cloudrun = admin(emu)
    operation = rollback(cloudrun, cloudrun.get_service(REF).etag)
    during = cloudrun.get_service(REF)
    assert during.reconciling and during.serving() == {CURRENT: 100}
    state = cloudrun.wait_operation(operation, timeout_s=5)
    assert not state.reconciling and state.serving() == {OLD: 100}
    assert len(emu.router.calls.list("run.operations.get")) >= 2


def test_wait_operation_times_out(emu: Emulator) -> None:
    emu.cloudrun.operation_delay_s = 30
    cloudrun = admin(emu)
    operation = rollback(cloudrun, "")
    with pytest.raises(CloudRunError) as raised:
        cloudrun.wait_operation(operation, timeout_s=0.3)
    assert raised.value.reason == "operation_timeout"


def test_stale_etag_is_an_etag_conflict_without_retry(emu: Emulator) -> None:
    with pytest.raises(EtagConflict):
        rollback(admin(emu), "stale")
    assert len(emu.router.calls.list("run.services.patch")) == 1


def test_bad_split_is_invalid_argument(emu: Emulator) -> None:
    cloudrun = admin(emu)
    targets = [TrafficTarget(OLD, 50), TrafficTarget(CURRENT, 40)]
    with pytest.raises(CloudRunError) as raised:
        cloudrun.start_traffic_update(REF, targets, cloudrun.get_service(REF).etag)
    assert raised.value.reason == "invalid_argument"
    assert "sum to 100" in raised.value.detail


def test_unknown_revision_fails_the_operation(emu: Emulator) -> None:
    cloudrun = admin(emu)
    operation = rollback(cloudrun, cloudrun.get_service(REF).etag, "wa-backend-00077-zzz")
    with pytest.raises(CloudRunError) as raised:
        cloudrun.wait_operation(operation, timeout_s=5)
    assert raised.value.reason == "operation_failed"
    assert "wa-backend-00077-zzz" in raised.value.detail
    assert cloudrun.get_service(REF).serving() == {CURRENT: 100}


def test_unknown_service_is_not_found(emu: Emulator) -> None:
    with pytest.raises(CloudRunError) as raised:
        admin(emu).get_service(ServiceRef("demo", "europe-west1", "nope"))
    assert raised.value.reason == "not_found"


def test_transient_503s_are_retried(emu: Emulator) -> None:
    cloudrun = admin(emu)
    etag = cloudrun.get_service(REF).etag
    emu.router.faults.add(Fault(api="run.services.patch", status=503, times=2))
    cloudrun.wait_operation(rollback(cloudrun, etag), timeout_s=5)
    assert len(emu.router.calls.list("run.services.patch")) == 3
    assert emu.cloudrun.traffic("wa-backend")[0]["revision"] == OLD


def test_persistent_503_gives_up_within_the_deadline(emu: Emulator) -> None:
    emu.router.faults.add(Fault(api="run.services.get", status=503, times=None))
    started = time.monotonic()
    with pytest.raises(CloudRunError) as raised:
        admin(emu, retry_deadline_s=1.0).get_service(REF)
    assert raised.value.reason == "unavailable"
    assert "ServiceUnavailable" in raised.value.detail
    assert time.monotonic() - started < 2.0
    assert len(emu.router.calls.list("run.services.get")) >= 2


def test_a_hanging_request_times_out_and_is_retried(emu: Emulator) -> None:
    emu.router.faults.add(Fault(api="run.revisions.list", status=None, delay_ms=1500, times=1))
    started = time.monotonic()
    revisions = admin(emu, attempt_timeout_s=0.3).list_revisions(REF)
    assert [r.name for r in revisions] == [CURRENT, OLD]
    assert time.monotonic() - started < 1.2
    assert len(emu.router.calls.list("run.revisions.list")) == 2


def test_unreachable_endpoint_is_unavailable() -> None:
    cloudrun = CloudRunAdmin(
        f"127.0.0.1:{closed_port()}", retry_deadline_s=0.5, initial_backoff_s=0.05
    )
    with pytest.raises(CloudRunError) as raised:
        cloudrun.get_service(REF)
    assert raised.value.reason == "unavailable"


def test_google_libraries_load_lazily() -> None:
    code = (
        "import sys, bot.gcp.cloudrun, bot.gcp.logs, bot.gcp.probe\n"
        "from bot.gcp.cloudrun import CloudRunAdmin\n"
        "from bot.gcp.logs import CloudLoggingAudit\n"
        "CloudRunAdmin('localhost:1'); CloudLoggingAudit('demo', 'localhost:1')\n"
        "loaded = [m for m in sys.modules if m.startswith(('google', 'requests'))]\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


# -- HttpProbe --------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_probe_reports_a_healthy_revision(emu: Emulator) -> None:
    result = HttpProbe().get(f"{emu.url}/_svc/wa-backend/health", timeout_s=2)
    assert result.ok and result.status == 200
    assert CURRENT in result.detail and result.elapsed_ms > 0


def test_probe_follows_behaviour_and_tags(emu: Emulator) -> None:
    emu.cloudrun.set_behaviour(OLD, healthz_status=500)
    probe = HttpProbe()
    result = probe.get(f"{emu.url}/_svc/wa-backend/_tag/blue/health", timeout_s=2)
    assert (result.ok, result.status) == (False, 500)
    assert "unhealthy" in result.detail
    missing = probe.get(f"{emu.url}/_svc/wa-backend/_tag/green/health", timeout_s=2)
    assert (missing.ok, missing.status) == (False, 404)


def test_probe_connection_refused() -> None:
    result = HttpProbe().get(f"http://127.0.0.1:{closed_port()}/health", timeout_s=2)
    assert (result.ok, result.status, result.detail) == (False, None, "connection refused")


def test_probe_timeout(emu: Emulator) -> None:
    emu.router.faults.add(Fault(api="service.healthz", status=None, delay_ms=1000))
    result = HttpProbe().get(f"{emu.url}/_svc/wa-backend/health", timeout_s=0.2)
    assert (result.ok, result.status, result.detail) == (False, None, "timeout")
    assert result.elapsed_ms < 900


def test_probe_never_raises_on_a_malformed_url() -> None:
    result = HttpProbe().get("not a url", timeout_s=1)
    assert not result.ok and result.status is None and result.detail


# -- CloudLoggingAudit ------------------------------------------------------------------------


def event(outcome: str, action: str, **fields: str) -> AuditEvent:
    return AuditEvent(
        at=datetime.now(UTC),
        actor="U123",
        action=action,
        outcome=outcome,
        service="wa-backend",
        revision=OLD,
        operation_id="op-1",
        detail={"reason": "5xx spike", **fields},
    )


def test_audit_entries_are_structured_with_severity_by_outcome(emu: Emulator) -> None:
    audit = CloudLoggingAudit("demo", emu.host)
    audit.write(event("ok", "rollback.requested"))
    audit.write(event("refused", "rollback.refused"))
    audit.write(event("failed", "cloudrun.traffic_update"))
    entries = emu.logging.entries()
    assert [e["severity"] for e in entries] == ["NOTICE", "WARNING", "ERROR"]
    first = entries[0]
    assert first["logName"] == "projects/demo/logs/runback-audit"
    assert first["resource"] == {"type": "global", "labels": {}}
    assert first["jsonPayload"] == {
        "service": "wa-backend",
        "revision": OLD,
        "actor": "U123",
        "action": "rollback.requested",
        "outcome": "ok",
        "operation_id": "op-1",
        "detail": {"reason": "5xx spike"},
    }


def test_audit_list_entries_filters_newest_first(emu: Emulator) -> None:
    audit = CloudLoggingAudit("demo", emu.host)
    for outcome, action in [("ok", "a.first"), ("refused", "a.second"), ("failed", "a.third")]:
        audit.write(event(outcome, action))
    found = audit.list_entries(
        f'logName="{audit.log_path}" AND severity>=WARNING AND jsonPayload.service=wa-backend',
        max_results=10,
    )
    assert [e["jsonPayload"]["action"] for e in found] == ["a.third", "a.second"]
    assert len(audit.list_entries(f'logName="{audit.log_path}"', max_results=1)) == 1


def test_audit_write_retries_then_warns_without_raising(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.router.faults.add(Fault(api="logging.entries.write", status=503, times=None))
    audit = CloudLoggingAudit("demo", emu.host, attempts=3, backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="bot.gcp.logs"):
        audit.write(event("ok", "rollback.requested"))
    assert len(emu.router.calls.list("logging.entries.write")) == 3
    assert "audit write failed" in caplog.text
    assert emu.logging.entries() == []


def test_audit_write_survives_a_transient_failure(emu: Emulator) -> None:
    emu.router.faults.add(Fault(api="logging.entries.write", status=500, times=1))
    CloudLoggingAudit("demo", emu.host, backoff_s=0.01).write(event("ok", "x.y"))
    assert len(emu.logging.entries()) == 1


def test_audit_against_an_unreachable_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    audit = CloudLoggingAudit("demo", f"127.0.0.1:{closed_port()}", attempts=2, backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="bot.gcp.logs"):
        audit.write(event("ok", "rollback.requested"))
    assert "audit write failed" in caplog.text
    with pytest.raises(LogsUnavailable):
        audit.list_entries("severity>=ERROR", max_results=5)


def test_audit_request_timeout_is_capped(emu: Emulator) -> None:
    emu.router.faults.add(Fault(api="logging.entries.write", status=None, delay_ms=1500, times=1))
    audit = CloudLoggingAudit("demo", emu.host, backoff_s=0.01, request_timeout_s=0.3)
    started = time.monotonic()
    audit.write(event("ok", "rollback.requested"))
    assert time.monotonic() - started < 1.2
    assert len(requests.get(f"{emu.url}/_emulator/logs", timeout=5).json()) == 1
