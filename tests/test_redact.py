"""What users see of a Cloud Run fault: the cause, never the bot's internal addresses (the audit
trail keeps them)."""

from __future__ import annotations

import pytest

from bot.policy.redact import without_addresses
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault


@pytest.mark.parametrize(
    ("detail", "hidden", "kept"),
    [
        (
            "ReadTimeout: HTTPConnectionPool(host='10.8.0.3', port=8480): Read timed out.",
            ["10.8.0.3", "8480"],
            "Read timed out.",
        ),
        (
            "ConnectionError: Max retries exceeded with url: /v2/projects/p/services/s "
            "(Caused by NewConnectionError: [Errno 111] Connection refused)",
            ["/v2/projects"],
            "Connection refused",
        ),
        ("503 GET https://run.googleapis.com/v2/projects/p: backend error", ["https://"], "503"),
        ("cannot connect to run.googleapis.com", ["googleapis"], "cannot connect"),
        ("proxy at squid.corp.example:3128 refused", ["squid.corp.example"], "refused"),
        ("dial [fd00::1]:443 failed", ["fd00"], "failed"),
        ("metadata.google.internal unreachable", ["metadata"], "unreachable"),
    ],
)
def test_addresses_are_hidden(detail: str, hidden: list[str], kept: str) -> None:
    shown = without_addresses(detail)
    assert all(part not in shown for part in hidden), shown
    assert kept in shown


def test_ordinary_details_are_untouched() -> None:
    detail = "ABORTED: etag 3.5 mismatch for wa-backend-00002 (retry 2 of 3)"
    assert without_addresses(detail) == detail


def test_cloud_run_did_not_answer_shows_no_internal_address(sandbox: Sandbox) -> None:
    sandbox.run_line("as ana")
    sandbox.emulator.router.faults.add(Fault("run.services.get", None, delay_ms=4000, times=20))
    shown = "\n".join(sandbox.run_line("/rollback wa-backend"))
    assert "Cloud Run did not answer" in shown and "timed out" in shown
    emulator_port = sandbox.emulator.url.rsplit(":", 1)[1]
    assert "127.0.0.1" not in shown and emulator_port not in shown
    logged = sandbox.runtime.deps.store.journal.audit()[-1].detail["detail"]
    assert emulator_port in logged, "the audit trail keeps the full detail"
