"""bot.gcp.monitoring.CloudMonitoring against the Monitoring gRPC emulator (real client, real
socket)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.gcp.monitoring import CloudMonitoring
from bot.ports import MetricsError, ServiceRef
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.monitoring import API
from bot.sandbox.emulator.server import Emulator
from tests.helpers import FakeClock

REF = ServiceRef("demo", "europe-west1", "wa-backend")
STABLE, CANARY, IDLE = "wa-backend-00001-sta", "wa-backend-00002-can", "wa-backend-00003-idl"


def seed(emulator: Emulator) -> None:
    emulator.cloudrun.seed_service(
        "demo",
        "europe-west1",
        "wa-backend",
        [{"name": IDLE, "image": "wa:0"}, {"name": STABLE, "image": "wa:1"}, {"name": CANARY}],
        {STABLE: 90, CANARY: 10},
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[Emulator]:
    emulator = Emulator(clock=clock).start()
    emulator.monitoring.delay_s = 0  # these tests are about the numbers; the delay has its own
    seed(emulator)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def metrics(emu: Emulator) -> Iterator[CloudMonitoring]:
    adapter = monitoring(emu)
    yield adapter
    adapter.close()


def monitoring(emulator: Emulator, **options: float) -> CloudMonitoring:
    settings = {"retry_deadline_s": 2.0, "initial_backoff_s": 0.02, **options}
    return CloudMonitoring(emulator.monitoring.host, **settings)


# -- numbers that follow behaviour and traffic share ------------------------------------------


def test_requests_follow_the_traffic_share(metrics: CloudMonitoring, clock: FakeClock) -> None:
    stable = metrics.revision_metrics(REF, STABLE, *clock.window())
    canary = metrics.revision_metrics(REF, CANARY, *clock.window())
    assert stable.requests == 5400 and canary.requests == 600  # 20 rps x 90% / 10% x 300 s
    assert stable.errors == canary.errors == 0
    assert stable.error_rate == 0.0
    assert stable.p95_ms == pytest.approx(120, rel=0.05)


def test_error_rate_and_p95_of_a_bad_canary(
    emu: Emulator, metrics: CloudMonitoring, clock: FakeClock
) -> None:
    emu.cloudrun.set_behaviour(CANARY, error_rate=0.07, p95_ms=2500)
    clock.advance(360)
    seen = metrics.revision_metrics(REF, CANARY, *clock.window())
    assert seen.requests == 600 and seen.errors == 42
    assert seen.error_rate == pytest.approx(0.07, abs=0.002)
    assert seen.p95_ms == pytest.approx(2500, rel=0.05)  # buckets grow by 1.4: interpolated


def test_no_traffic_is_no_data_not_a_pass(metrics: CloudMonitoring, clock: FakeClock) -> None:
    seen = metrics.revision_metrics(REF, IDLE, *clock.window())
    assert (seen.requests, seen.errors, seen.p95_ms, seen.error_rate) == (0, 0, None, None)


def test_history_is_there_right_after_seeding(emulator: Emulator) -> None:
    seed(emulator)  # the shared fixture: wall-clock time
    emulator.monitoring.delay_s = 0
    adapter = monitoring(emulator)
    try:
        end = datetime.now(UTC)
        seen = adapter.revision_metrics(REF, CANARY, end - timedelta(minutes=5), end)
    finally:
        adapter.close()
    assert 500 <= seen.requests <= 600  # up to a minute is not written yet


def test_exactly_two_calls_with_the_runbook_queries(
    emu: Emulator, metrics: CloudMonitoring, clock: FakeClock
) -> None:
    metrics.revision_metrics(REF, CANARY, *clock.window())
    counts, latencies = (call.body for call in emu.router.calls.list(API))
    assert counts["name"] == latencies["name"] == "projects/demo"
    assert 'metric.type = "run.googleapis.com/request_count"' in counts["filter"]
    assert f'resource.labels.revision_name = "{CANARY}"' in counts["filter"]
    assert counts["aggregation"] == {
        "alignment_period": "300s",
        "per_series_aligner": "ALIGN_DELTA",
        "cross_series_reducer": "REDUCE_SUM",
        "group_by_fields": ["metric.labels.response_code_class"],
    }
    assert 'metric.type = "run.googleapis.com/request_latencies"' in latencies["filter"]
    assert latencies["aggregation"] == {
        "alignment_period": "300s",
        "per_series_aligner": "ALIGN_DELTA",  # keeps distributions: one P95 of every request
        "cross_series_reducer": "REDUCE_PERCENTILE_95",
        "group_by_fields": [],
    }


def test_a_short_window_is_widened_to_a_minute(metrics: CloudMonitoring, clock: FakeClock) -> None:
    start, end = clock.window(30)
    seen = metrics.revision_metrics(REF, STABLE, start, end)
    assert (seen.start, seen.end) == (end - timedelta(seconds=60), end)
    assert seen.requests == 1080


def test_naive_datetimes_are_utc(metrics: CloudMonitoring, clock: FakeClock) -> None:
    start, end = clock.window()
    seen = metrics.revision_metrics(
        REF, STABLE, start.replace(tzinfo=None), end.replace(tzinfo=None)
    )
    assert seen.requests == 5400 and seen.end == end


# -- failures never read as a pass ------------------------------------------------------------


def test_transient_503s_are_retried(
    emu: Emulator, metrics: CloudMonitoring, clock: FakeClock
) -> None:
    emu.router.faults.add(Fault(API, 503, times=2))
    seen = metrics.revision_metrics(REF, STABLE, *clock.window())
    assert seen.requests == 5400
    # request_count: 2 failures + 1 success; request_latencies: 1
    assert len(emu.router.calls.list(API)) == 4


@pytest.mark.parametrize("status", [429, 500, 504])
def test_other_transient_codes_are_retried(
    emu: Emulator, metrics: CloudMonitoring, clock: FakeClock, status: int
) -> None:
    emu.router.faults.add(Fault(API, status, times=1))
    assert metrics.revision_metrics(REF, STABLE, *clock.window()).requests == 5400


def test_persistent_503_gives_up_within_the_deadline(emu: Emulator, clock: FakeClock) -> None:
    emu.router.faults.add(Fault(API, 503, times=None))
    adapter = monitoring(emu, retry_deadline_s=0.5)
    began = time.monotonic()
    with pytest.raises(MetricsError) as raised:
        adapter.revision_metrics(REF, STABLE, *clock.window())
    adapter.close()
    assert raised.value.reason == "unavailable"
    assert time.monotonic() - began < 2.0
    assert len(emu.router.calls.list(API)) >= 2


def test_invalid_argument_is_not_retried(
    emu: Emulator, metrics: CloudMonitoring, clock: FakeClock
) -> None:
    emu.router.faults.add(Fault(API, 400, times=None))
    with pytest.raises(MetricsError) as raised:
        metrics.revision_metrics(REF, STABLE, *clock.window())
    assert raised.value.reason == "invalid_argument"
    assert len(emu.router.calls.list(API)) == 1


def test_a_hanging_call_times_out_and_is_retried(emu: Emulator, clock: FakeClock) -> None:
    emu.router.faults.add(Fault(API, None, delay_ms=600, times=1))
    adapter = monitoring(emu, attempt_timeout_s=0.2)
    try:
        assert adapter.revision_metrics(REF, STABLE, *clock.window()).requests == 5400
    finally:
        adapter.close()
    assert len(emu.router.calls.list(API)) == 3


def test_unreachable_endpoint_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = CloudMonitoring(f"127.0.0.1:{port}", retry_deadline_s=0.3, initial_backoff_s=0.05)
    end = datetime.now(UTC)
    with pytest.raises(MetricsError) as raised:
        adapter.revision_metrics(REF, STABLE, end - timedelta(minutes=5), end)
    adapter.close()
    assert raised.value.reason == "unavailable"


def test_google_libraries_load_lazily() -> None:
    code = (
        "import sys\n"
        "from bot.gcp.monitoring import CloudMonitoring\n"
        "CloudMonitoring('localhost:1')\n"
        "print([m for m in sys.modules if m.startswith(('google', 'grpc'))])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


def test_a_few_slow_errors_do_not_inflate_the_p95(
    emu: Emulator, metrics: CloudMonitoring, clock: FakeClock
) -> None:
    emu.cloudrun.set_behaviour(CANARY, error_rate=0.02, p95_ms=700)
    clock.advance(360)
    seen = metrics.revision_metrics(REF, CANARY, *clock.window())
    assert seen.errors == 12
    assert seen.p95_ms == pytest.approx(700, rel=0.05)  # the P95 of all 600 requests
