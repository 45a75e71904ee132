"""The Cloud Monitoring emulator through the real MetricServiceClient over a real gRPC socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import requests
from google.api import metric_pb2
from google.api_core import exceptions
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcTransport,
)

from bot.gcp.cloudrun import CloudRunAdmin
from bot.ports import ServiceRef, TrafficTarget
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.monitoring import API
from bot.sandbox.emulator.server import Emulator
from tests.helpers import FakeClock

COUNT = "run.googleapis.com/request_count"
LATENCIES = "run.googleapis.com/request_latencies"
BLUE, GREEN = "wa-backend-00001-blu", "wa-backend-00002-grn"
REF = ServiceRef("demo", "europe-west1", "wa-backend")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[Emulator]:
    emulator = Emulator(clock=clock).start()
    emulator.monitoring.delay_s = 0  # these tests are about the numbers; the delay has its own
    emulator.cloudrun.seed_service(
        "demo",
        "europe-west1",
        "wa-backend",
        [{"name": BLUE, "image": "wa:1"}, {"name": GREEN, "image": "wa:2"}],
        {BLUE: 90, GREEN: 10},
    )
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def client(emu: Emulator) -> Iterator[monitoring_v3.MetricServiceClient]:
    channel = grpc.insecure_channel(emu.monitoring.host)
    yield monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
    channel.close()


def revision_filter(metric: str, revision: str, *extra: str) -> str:
    terms = [
        f'metric.type = "{metric}"',
        'resource.type = "cloud_run_revision"',
        'resource.labels.service_name = "wa-backend"',
        f'resource.labels.revision_name = "{revision}"',
        *extra,
    ]
    return " AND ".join(terms)


def window(clock: FakeClock, seconds: int = 300) -> dict[str, Any]:
    end = int(clock.now)
    return {"start_time": {"seconds": end - seconds}, "end_time": {"seconds": end}}


def list_series(
    client: monitoring_v3.MetricServiceClient, **request: Any
) -> list[monitoring_v3.TimeSeries]:
    request.setdefault("name", "projects/demo")
    return list(client.list_time_series(request=request, retry=None, timeout=5))


def by_class(
    client: monitoring_v3.MetricServiceClient, clock: FakeClock, revision: str, seconds: int = 300
) -> dict[str, int]:
    """request_count over the window, one number per response class (the adapter's query)."""
    series = list_series(
        client,
        filter=revision_filter(COUNT, revision),
        interval=window(clock, seconds),
        aggregation={
            "alignment_period": {"seconds": seconds},
            "per_series_aligner": "ALIGN_DELTA",
            "cross_series_reducer": "REDUCE_SUM",
            "group_by_fields": ["metric.labels.response_code_class"],
        },
    )
    found = {}
    for one in series:
        assert len(one.points) == 1
        found[one.metric.labels["response_code_class"]] = one.points[0].value.int64_value
    return found


def p95(client: monitoring_v3.MetricServiceClient, clock: FakeClock, revision: str) -> float | None:
    series = list_series(
        client,
        filter=revision_filter(LATENCIES, revision),
        interval=window(clock),
        aggregation={
            "alignment_period": {"seconds": 300},
            "per_series_aligner": "ALIGN_PERCENTILE_95",
            "cross_series_reducer": "REDUCE_PERCENTILE_95",
        },
    )
    if not series:
        return None
    assert len(series) == 1 and series[0].value_type == metric_pb2.MetricDescriptor.DOUBLE
    return series[0].points[0].value.double_value


# -- raw series and their shape ---------------------------------------------------------------


def test_raw_points_are_per_minute_deltas_newest_first(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    series = list_series(client, filter=revision_filter(COUNT, BLUE), interval=window(clock))
    assert len(series) == 1  # no 5xx series: the revision answered no errors
    one = series[0]
    assert one.metric.type == COUNT and one.resource.type == "cloud_run_revision"
    assert dict(one.metric.labels) == {"response_code": "200", "response_code_class": "2xx"}
    assert dict(one.resource.labels) == {
        "project_id": "demo",
        "location": "europe-west1",
        "service_name": "wa-backend",
        "configuration_name": "wa-backend",
        "revision_name": BLUE,
    }
    assert one.metric_kind == metric_pb2.MetricDescriptor.DELTA
    assert one.value_type == metric_pb2.MetricDescriptor.INT64
    assert one.unit == "1"
    ends = [p.interval.end_time.timestamp() for p in one.points]
    assert len(ends) == 5 and ends == sorted(ends, reverse=True)
    assert all(end % 60 == 0 for end in ends)
    for point in one.points:
        assert (point.interval.end_time - point.interval.start_time).total_seconds() == 60
        assert point.value.int64_value == 20 * 0.9 * 60  # rps 20 x 90% share x 60 s


def test_group_by_class_splits_errors_by_share(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    emu.cloudrun.set_behaviour(GREEN, error_rate=0.07)
    clock.advance(360)
    assert by_class(client, clock, BLUE) == {"2xx": 5400}  # 20 rps x 90% x 300 s
    green = by_class(client, clock, GREEN)  # 20 rps x 10% x 300 s = 600, 7% of them 5xx
    assert green == {"2xx": 558, "5xx": 42}


def test_reduce_sum_without_group_by_merges_everything(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    series = list_series(
        client,
        filter=f'metric.type = "{COUNT}" AND resource.labels.service_name = starts_with("wa-")',
        interval=window(clock),
        aggregation={
            "alignment_period": {"seconds": 60},
            "per_series_aligner": "ALIGN_DELTA",
            "cross_series_reducer": "REDUCE_SUM",
        },
    )
    assert len(series) == 1
    assert dict(series[0].metric.labels) == {} and dict(series[0].resource.labels) == {}
    assert [p.value.int64_value for p in series[0].points] == [1200] * 5  # both revisions


def test_rate_aligner_gives_requests_per_second(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    series = list_series(
        client,
        filter=revision_filter(COUNT, BLUE),
        interval=window(clock),
        aggregation={"alignment_period": {"seconds": 300}, "per_series_aligner": "ALIGN_RATE"},
    )
    assert series[0].value_type == metric_pb2.MetricDescriptor.DOUBLE
    assert series[0].unit == "1/s"
    assert series[0].points[0].value.double_value == pytest.approx(18.0)


def test_headers_view_has_no_points(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    series = list_series(
        client,
        filter=f'metric.type = "{COUNT}"',
        interval=window(clock),
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS,
    )
    assert sorted(s.resource.labels["revision_name"] for s in series) == [BLUE, GREEN]
    assert all(len(s.points) == 0 for s in series)


def test_paging_counts_points_and_the_pager_follows_tokens(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    series = list_series(
        client, filter=f'metric.type = "{COUNT}"', interval=window(clock), page_size=5
    )
    assert len(series) == 2 and all(len(s.points) == 5 for s in series)
    assert len(emu.router.calls.list(API)) == 2  # one series (5 points) per page


def test_unknown_metric_project_or_label_value_is_empty(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    cpu = "run.googleapis.com/container/cpu/utilizations"
    assert list_series(client, filter=f'metric.type = "{cpu}"', interval=window(clock)) == []
    assert (
        list_series(
            client, name="projects/other", filter=f'metric.type = "{COUNT}"', interval=window(clock)
        )
        == []
    )
    five_xx = 'metric.labels.response_code_class = "5xx"'
    assert (
        list_series(client, filter=revision_filter(COUNT, BLUE, five_xx), interval=window(clock))
        == []
    )


def test_future_and_pre_history_windows_have_no_points(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    ahead = {
        "start_time": {"seconds": int(clock.now) + 60},
        "end_time": {"seconds": int(clock.now) + 600},
    }
    assert list_series(client, filter=f'metric.type = "{COUNT}"', interval=ahead) == []
    before = {
        "start_time": {"seconds": int(clock.now) - 7200},
        "end_time": {"seconds": int(clock.now) - 3600},
    }
    assert list_series(client, filter=f'metric.type = "{COUNT}"', interval=before) == []


# -- latencies --------------------------------------------------------------------------------


def test_latency_distribution_and_p95(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    emu.cloudrun.set_behaviour(GREEN, p95_ms=2500)
    clock.advance(360)
    raw = list_series(client, filter=revision_filter(LATENCIES, GREEN), interval=window(clock, 60))
    assert len(raw) == 1 and raw[0].unit == "ms"
    assert raw[0].value_type == metric_pb2.MetricDescriptor.DISTRIBUTION
    dist = raw[0].points[0].value.distribution_value
    assert dist.count == 120 and sum(dist.bucket_counts) == 120
    assert dist.bucket_options.exponential_buckets.growth_factor == pytest.approx(1.4)
    assert 500 < dist.mean < 2500
    assert p95(client, clock, GREEN) == pytest.approx(2500, rel=0.05)
    assert p95(client, clock, BLUE) == pytest.approx(120, rel=0.05)  # the default behaviour


def test_explicit_buckets(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    emu.monitoring.latency_buckets = "explicit"
    emu.cloudrun.set_behaviour(BLUE, p95_ms=900)
    clock.advance(360)
    raw = list_series(client, filter=revision_filter(LATENCIES, BLUE), interval=window(clock, 60))
    assert 800 in raw[0].points[0].value.distribution_value.bucket_options.explicit_buckets.bounds
    assert p95(client, clock, BLUE) == pytest.approx(900, rel=0.05)


def test_percentile_aligner_needs_a_distribution(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        list_series(
            client,
            filter=revision_filter(COUNT, BLUE),
            interval=window(clock),
            aggregation={
                "alignment_period": {"seconds": 300},
                "per_series_aligner": "ALIGN_PERCENTILE_95",
            },
        )


# -- history: traffic share and behaviour over time -------------------------------------------


def test_traffic_shift_moves_the_requests(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    admin = CloudRunAdmin(emu.host, retry_deadline_s=2)
    etag = admin.get_service(REF).etag
    admin.wait_operation(admin.start_traffic_update(REF, [TrafficTarget(GREEN, 100)], etag), 5)
    clock.advance(360)
    assert by_class(client, clock, GREEN) == {"2xx": 6000}  # all of 20 rps for 300 s
    assert by_class(client, clock, BLUE) == {}  # no traffic: no points at all
    assert p95(client, clock, BLUE) is None
    older = by_class(client, clock, BLUE, seconds=600)["2xx"]  # what it served before the shift
    assert 4 * 1080 < older < 5 * 1080


def test_behaviour_change_applies_from_then_on(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    clock.advance(120)
    emu.cloudrun.set_behaviour(BLUE, error_rate=0.5, rps=40)  # 25 s into a minute
    clock.advance(120)
    raw = list_series(
        client,
        filter=revision_filter(COUNT, BLUE, 'metric.labels.response_code_class = "5xx"'),
        interval=window(clock, 600),
    )
    # 40 rps x 90% x 50% = 18 errors/s: the 35 s after the change, then one whole minute
    assert [p.value.int64_value for p in raw[0].points] == [1080, 630]


def test_reseeding_and_reset_forget_history(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    emu.cloudrun.seed_service("demo", "europe-west1", "wa-backend", [{"name": BLUE}])
    assert by_class(client, clock, BLUE) == {"2xx": 6000}  # the new seed's history only
    assert by_class(client, clock, GREEN) == {}
    emu.cloudrun.reset()
    assert list_series(client, filter=f'metric.type = "{COUNT}"', interval=window(clock)) == []


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_filter",
    [
        "",
        'resource.type = "cloud_run_revision"',  # no metric type
        f'metric.type = "{COUNT}" AND',  # dangling AND
        f"metric.type = {COUNT}",  # unquoted value
        f'metric.type = "{COUNT}" AND resource.zone = "x"',  # unknown field
        f'metric.type == "{COUNT}"',
        f'metric.type = "{COUNT}" AND metric.labels.x = one_of("a" "b")',
    ],
)
def test_malformed_filter_is_invalid_argument(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock, bad_filter: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        list_series(client, filter=bad_filter, interval=window(clock))


def test_or_is_unimplemented(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    with pytest.raises(exceptions.MethodNotImplemented):
        list_series(
            client, filter=f'metric.type = "{COUNT}" OR metric.type = "x"', interval=window(clock)
        )


@pytest.mark.parametrize(
    "request_fields",
    [
        {"name": "demo"},
        {"interval": {"start_time": {"seconds": 10}}},  # no end time
        {"interval": {"start_time": {"seconds": 20}, "end_time": {"seconds": 10}}},
        {"aggregation": {"alignment_period": {"seconds": 30}, "per_series_aligner": "ALIGN_DELTA"}},
        {"aggregation": {"per_series_aligner": "ALIGN_DELTA"}},  # no alignment period
        {"aggregation": {"cross_series_reducer": "REDUCE_SUM"}},  # reducer without aligner
        {"page_token": "not-a-token"},
    ],
)
def test_bad_request_is_invalid_argument(
    emu: Emulator,
    client: monitoring_v3.MetricServiceClient,
    clock: FakeClock,
    request_fields: dict[str, Any],
) -> None:
    request = {"filter": f'metric.type = "{COUNT}"', "interval": window(clock), **request_fields}
    with pytest.raises(exceptions.InvalidArgument):
        list_series(client, **request)


def test_other_rpcs_are_unimplemented(client: monitoring_v3.MetricServiceClient) -> None:
    with pytest.raises(exceptions.MethodNotImplemented):
        list(client.list_metric_descriptors(name="projects/demo", retry=None, timeout=5))


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, exceptions.ServiceUnavailable),
        (429, exceptions.ResourceExhausted),
        (400, exceptions.InvalidArgument),
        (500, exceptions.InternalServerError),
        (504, exceptions.DeadlineExceeded),
        (403, exceptions.PermissionDenied),
    ],
)
def test_faults_map_to_grpc_status_and_calls_are_recorded(
    emu: Emulator,
    client: monitoring_v3.MetricServiceClient,
    clock: FakeClock,
    status: int,
    error: type[Exception],
) -> None:
    emu.router.faults.add(Fault(API, status, message="injected"))
    with pytest.raises(error):
        list_series(client, filter=f'metric.type = "{COUNT}"', interval=window(clock))
    assert len(list_series(client, filter=f'metric.type = "{COUNT}"', interval=window(clock))) == 2
    calls = emu.router.calls.list(API)
    assert len(calls) == 2
    assert calls[0].path == "/google.monitoring.v3.MetricService/ListTimeSeries"
    assert calls[0].body["filter"] == f'metric.type = "{COUNT}"'


def test_a_delay_past_the_deadline_is_deadline_exceeded(
    emu: Emulator, client: monitoring_v3.MetricServiceClient, clock: FakeClock
) -> None:
    emu.router.faults.add(Fault(API, None, delay_ms=400))
    with pytest.raises(exceptions.DeadlineExceeded):
        client.list_time_series(
            name="projects/demo",
            filter=f'metric.type = "{COUNT}"',
            interval=monitoring_v3.TimeInterval(window(clock)),
            retry=None,
            timeout=0.1,
        )


# -- wiring and the control route -------------------------------------------------------------


def test_env_and_control_route(emu: Emulator, clock: FakeClock) -> None:
    assert emu.env()["RUNBACK_EMULATOR_GRPC_HOST"] == emu.monitoring.host
    emu.cloudrun.set_behaviour(GREEN, error_rate=0.25)
    clock.advance(120)
    body = requests.get(
        f"{emu.url}/_emulator/monitoring/series",
        params={"revision": GREEN, "minutes": 3},
        timeout=5,
    ).json()
    assert body["service"].endswith("/services/wa-backend")
    assert [m["requests"] for m in body["minutes"]] == [120, 120, 120]
    assert body["minutes"][0]["errors"] == 30
    missing = requests.get(f"{emu.url}/_emulator/monitoring/series?revision=nope", timeout=5)
    assert missing.status_code == 404
    assert emu.router.calls.list(API) == []  # the control route is not a Monitoring call
