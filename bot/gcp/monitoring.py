"""The Metrics port over Cloud Monitoring (``google-cloud-monitoring``, gRPC).

``minutes`` reads the minutes Monitoring shows of a revision, each with its requests and 5xx
errors (Cloud Run's points are visible up to ~3 minutes after the minute they describe), so a
judgement can pick the freshest of them (bot/policy/windows.py); ``visible_until`` the newest.
``revision_metrics`` judges one Cloud Run revision over a window with exactly two
ListTimeSeries calls (the runbook's decision table needs nothing more):

1. ``run.googleapis.com/request_count``, ALIGN_DELTA over the whole window, REDUCE_SUM grouped
   by ``metric.labels.response_code_class``: requests = every class, errors = the 5xx series.
2. ``run.googleapis.com/request_latencies``, ALIGN_DELTA over the window (one distribution per
   series) + REDUCE_PERCENTILE_95 across the series: Monitoring merges the 2xx and 5xx
   distributions and reads the 95th percentile of all the revision's requests, in ms; None when
   there is no point. (ALIGN_PERCENTILE_95 first would take the 95th percentile of per-class
   percentiles: with a handful of 5xx answers their P95 dominates, and a 790 ms revision could
   read 1.3 s.)

The window is aligned as one period that ends at ``end``. Monitoring's alignment period is
whole seconds and at least 60 s, so a shorter window is widened to 60 s; the RevisionMetrics
carries the window actually queried.

Google libraries are imported on first use. With an emulator host the client speaks plain gRPC
to it (anonymous); otherwise it uses Application Default Credentials. Each call is retried with
exponential backoff on UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and INTERNAL for at
most ``retry_deadline_s`` (each attempt waits at most ``attempt_timeout_s``), then raises
MetricsError: a Monitoring failure never reads as "no errors".
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from bot.gcp.errors import api_error_reason, describe
from bot.ports import MetricsError, Minute, RevisionMetrics, ServiceRef

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import monitoring_v3

T = TypeVar("T")

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MIN_WINDOW_S = 60
MAX_BACKOFF_S = 2.0


class CloudMonitoring:
    """Metrics (bot.ports) backed by monitoring_v3.MetricServiceClient."""

    def __init__(
        self,
        emulator_grpc_host: str | None,
        retry_deadline_s: float = 10.0,
        initial_backoff_s: float = 0.2,
        attempt_timeout_s: float = 5.0,
    ) -> None:
        self._emulator_host = emulator_grpc_host
        self._deadline_s = retry_deadline_s
        self._initial_backoff_s = initial_backoff_s
        self._attempt_timeout_s = min(attempt_timeout_s, retry_deadline_s)
        self._lock = threading.Lock()
        self._client: monitoring_v3.MetricServiceClient | None = None

    # -- the Metrics port ---------------------------------------------------------------------

    def revision_metrics(
        self, ref: ServiceRef, revision: str, start: datetime, end: datetime
    ) -> RevisionMetrics:
        start, end, period_s = query_window(start, end)
        counts = self._list(ref, REQUEST_COUNT, revision, start, end, _count_aggregation(period_s))
        requests, errors = count_totals(counts)
        latencies = self._list(
            ref, REQUEST_LATENCIES, revision, start, end, _p95_aggregation(period_s)
        )
        return RevisionMetrics(requests, errors, newest_double(latencies), start, end)

    def visible_until(
        self, ref: ServiceRef, revision: str, start: datetime, end: datetime
    ) -> datetime | None:
        """The end of the newest raw request_count point of ``revision`` in ``[start, end]``.

        Cloud Run writes one point a minute and it shows up to ~3 minutes later: a window that
        ends at ``end`` would miss those minutes, so judgements end here instead.
        """
        series = self._list(ref, REQUEST_COUNT, revision, _aware(start), _aware(end), None)
        ends = [
            point.interval.end_time
            for one in series
            for point in one.points
            if point.interval.end_time
        ]
        return max(ends) if ends else None

    def minutes(
        self, ref: ServiceRef, revision: str, start: datetime, end: datetime
    ) -> list[Minute]:
        """Each raw request_count minute of ``revision`` in ``[start, end]`` (one point a minute
        per response class, each covering the minute before its end), summed per minute."""
        series = self._list(ref, REQUEST_COUNT, revision, _aware(start), _aware(end), None)
        return minute_totals(series)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.transport.close()
                self._client = None

    # -- plumbing -----------------------------------------------------------------------------

    def _list(
        self,
        ref: ServiceRef,
        metric_type: str,
        revision: str,
        start: datetime,
        end: datetime,
        aggregation: dict[str, Any] | None,
    ) -> list[Any]:
        client = self._get_client()
        request = {
            "name": f"projects/{ref.project}",
            "filter": revision_filter(metric_type, ref, revision),
            "interval": {"start_time": start, "end_time": end},
            "view": "FULL",
        }
        if aggregation is not None:
            request["aggregation"] = aggregation
        options: dict[str, Any] = {"retry": self._retry(), "timeout": self._attempt_timeout_s}
        return self._call(lambda: list(client.list_time_series(request=request, **options)))

    @property
    def ready(self) -> bool:
        """Whether the client library is loaded and its client built (``warm_up`` does it)."""
        return self._client is not None

    def warm_up(self) -> None:
        """Import the library and build the client now, off the first request's path."""
        self._get_client()

    def _get_client(self) -> monitoring_v3.MetricServiceClient:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> monitoring_v3.MetricServiceClient:
        from google.cloud import monitoring_v3

        if not self._emulator_host:
            return monitoring_v3.MetricServiceClient()
        import grpc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.monitoring_v3.services.metric_service.transports import (
            MetricServiceGrpcTransport,
        )

        transport = MetricServiceGrpcTransport(
            channel=grpc.insecure_channel(self._emulator_host),
            credentials=AnonymousCredentials(),  # ignored with a channel; never ADC
        )
        return monitoring_v3.MetricServiceClient(transport=transport)

    def _retry(self) -> Retry:
        from google.api_core import exceptions
        from google.api_core.retry import Retry, if_exception_type

        transient = if_exception_type(
            exceptions.ServiceUnavailable,
            exceptions.DeadlineExceeded,
            exceptions.ResourceExhausted,
            exceptions.InternalServerError,
        )
        return Retry(
            predicate=transient,
            initial=self._initial_backoff_s,
            maximum=MAX_BACKOFF_S,
            multiplier=2.0,
            timeout=self._deadline_s,
        )

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one (already retried) client call, translating failures to MetricsError."""
        from google.api_core import exceptions

        try:
            return fn()
        except exceptions.RetryError as error:
            cause = error.cause if error.cause is not None else error
            raise MetricsError("unavailable", describe(cause)) from error
        except exceptions.GoogleAPICallError as error:
            raise MetricsError(api_error_reason(error), describe(error)) from error


# -- the queries and their answers (pure, no I/O) ---------------------------------------------


def query_window(start: datetime, end: datetime) -> tuple[datetime, datetime, int]:
    """(start, end, alignment period in s): whole seconds, at least MIN_WINDOW_S, ending at end."""
    end = _aware(end)
    seconds = (end - _aware(start)).total_seconds()
    period_s = max(MIN_WINDOW_S, math.ceil(seconds - 1e-6))
    return end - timedelta(seconds=period_s), end, period_s


def revision_filter(metric_type: str, ref: ServiceRef, revision: str) -> str:
    terms = {
        "metric.type": metric_type,
        "resource.type": "cloud_run_revision",
        "resource.labels.location": ref.region,
        "resource.labels.service_name": ref.name,
        "resource.labels.revision_name": revision,
    }
    return " AND ".join(f"{key} = {_quote(value)}" for key, value in terms.items())


def count_totals(series: list[Any]) -> tuple[int, int]:
    """(requests, 5xx errors) from request_count series grouped by response_code_class."""
    requests = errors = 0
    for one in series:
        total = sum(int(point.value.int64_value) for point in one.points)
        requests += total
        if one.metric.labels.get("response_code_class") == "5xx":
            errors += total
    return requests, errors


def minute_totals(series: list[Any]) -> list[Minute]:
    """Raw request_count series (one per response code) as minutes: requests and 5xx errors,
    oldest first."""
    totals: dict[datetime, list[int]] = {}
    for one in series:
        five_xx = one.metric.labels.get("response_code_class") == "5xx"
        for point in one.points:
            counts = totals.setdefault(_whole_seconds(point.interval.end_time), [0, 0])
            value = int(point.value.int64_value)
            counts[0] += value
            counts[1] += value if five_xx else 0
    return [Minute(end, *totals[end]) for end in sorted(totals)]


def newest_double(series: list[Any]) -> float | None:
    """The newest point's double value across the series, None when there is no point."""
    newest: tuple[datetime, float] | None = None
    for one in series:
        for point in one.points:
            stamp = point.interval.end_time
            if newest is None or stamp > newest[0]:
                newest = (stamp, float(point.value.double_value))
    return None if newest is None else newest[1]


def _count_aggregation(period_s: int) -> dict[str, Any]:
    return {
        "alignment_period": {"seconds": period_s},
        "per_series_aligner": "ALIGN_DELTA",
        "cross_series_reducer": "REDUCE_SUM",
        "group_by_fields": ["metric.labels.response_code_class"],
    }


def _p95_aggregation(period_s: int) -> dict[str, Any]:
    return {
        "alignment_period": {"seconds": period_s},
        "per_series_aligner": "ALIGN_DELTA",
        "cross_series_reducer": "REDUCE_PERCENTILE_95",
    }


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _whole_seconds(moment: datetime) -> datetime:
    """A plain UTC datetime (the library's carries nanoseconds), so that minutes compare."""
    return datetime(*moment.astimezone(UTC).timetuple()[:6], tzinfo=UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
