"""Cloud Monitoring emulator: ``google.monitoring.v3.MetricService/ListTimeSeries`` over real gRPC.

It serves what ``google-cloud-monitoring``'s MetricServiceClient sends over its gRPC transport:
requests are parsed with ``monitoring_v3.ListTimeSeriesRequest.deserialize`` and answers built as
``ListTimeSeriesResponse``; every other RPC is UNIMPLEMENTED.

The series are Cloud Run's ``run.googleapis.com/request_count`` and ``request_latencies`` for
resource type ``cloud_run_revision``, synthesised from the Cloud Run emulator's history (see
``monitoring_data``), visible only ``delay_s`` (default 180 s, like Cloud Run) after the
fact: a revision receives ``rps x its actual traffic share``, ``error_rate`` of
it answered 5xx, with latencies whose 95th percentile is ``p95_ms``. A revision without traffic
has no points. Seeding a service backdates its history by ten minutes.

Honoured like the real API: ``name`` (``projects/P``), ``filter`` (an AND of comparisons
``=``/``!=`` on ``metric.type``, ``resource.type``, ``project``, ``metric.labels.K``,
``resource.labels.K``; values are strings or ``starts_with``/``ends_with``/``has_substring``/
``one_of``/``monitoring.regex.full_match``; a filter must name a metric type), ``interval``,
``aggregation`` (aligners NONE, DELTA, SUM, RATE, PERCENTILE_99/95/50/05; reducers NONE, SUM,
MEAN, MIN, MAX, COUNT, PERCENTILE_99/95/50/05; ``group_by_fields``), ``view`` and paging
(``page_size`` counts points in FULL view, series in HEADERS view). Points come newest first.
Aligned points end at ``interval.end_time``, ``end_time - alignment_period``, ... (while later
than ``start_time``) and each covers the ``alignment_period`` before its end. Malformed input is
INVALID_ARGUMENT; valid but unsupported features (OR, NOT, other aligners) are UNIMPLEMENTED.

The same server answers ``AlertPolicyService/ListAlertPolicies`` and
``NotificationChannelService/ListNotificationChannels`` from the policies and channels in
``alerts`` (see ``monitoring_alerts``); the sandbox's seed gives each service an error-rate and a
P95 policy that notify a webhook channel pointing at Runback's ``/alerts/monitoring``.

Faults injected on api ``monitoring.timeSeries.list``, ``monitoring.alertPolicies.list`` or
``monitoring.notificationChannels.list`` (the REST emulator's control API) apply here: status
503 -> UNAVAILABLE, 403 -> PERMISSION_DENIED, 429 -> RESOURCE_EXHAUSTED, 400 -> INVALID_ARGUMENT,
500 -> INTERNAL, 504 -> DEADLINE_EXCEEDED; a delay longer than the call's deadline ends in
DEADLINE_EXCEEDED. Every call is recorded in the router's request log under its api name.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import grpc
from google.cloud import monitoring_v3
from google.protobuf import json_format

from bot.sandbox.emulator import monitoring_data as data
from bot.sandbox.emulator.cloudrun import CloudRunEmulator, ServiceSnapshot
from bot.sandbox.emulator.http import (
    HttpError,
    RecordedCall,
    Request,
    Response,
    Router,
    json_response,
)
from bot.sandbox.emulator.monitoring_alerts import AlertPolicyStore
from bot.sandbox.emulator.monitoring_query import (
    RevisionHistory,
    RpcError,
    histories,
    page,
    plan_request,
    query,
    to_response,
)

API = "monitoring.timeSeries.list"
POLICIES_API = "monitoring.alertPolicies.list"
CHANNELS_API = "monitoring.notificationChannels.list"
# Cloud Run's metrics are "sampled every 60 seconds. After sampling, data is not visible for up
# to 180 seconds" (https://cloud.google.com/monitoring/api/v3/latency-n-retention and the
# run.googleapis.com entries of Google Cloud's metrics list). The emulator answers as if the
# newest data were that old; 0 turns the delay off.
DEFAULT_DELAY_S = 180.0
SERVICE = "google.monitoring.v3.MetricService"
METHOD_PATH = f"/{SERVICE}/ListTimeSeries"
POLICY_SERVICE = "google.monitoring.v3.AlertPolicyService"
CHANNEL_SERVICE = "google.monitoring.v3.NotificationChannelService"
METHOD_PATHS = {
    API: METHOD_PATH,
    POLICIES_API: f"/{POLICY_SERVICE}/ListAlertPolicies",
    CHANNELS_API: f"/{CHANNEL_SERVICE}/ListNotificationChannels",
}

Code = grpc.StatusCode
FAULT_CODES = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    409: Code.ABORTED,
    429: Code.RESOURCE_EXHAUSTED,
    500: Code.INTERNAL,
    501: Code.UNIMPLEMENTED,
    503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}


# -- the emulator -----------------------------------------------------------------------------


class MonitoringEmulator:
    """The MetricService gRPC server; its data follows ``cloudrun``'s history."""

    def __init__(
        self,
        cloudrun: CloudRunEmulator,
        router: Router | None = None,
        clock: Callable[[], float] | None = None,
        latency_buckets: str = "exponential",
    ) -> None:
        self.cloudrun = cloudrun
        self.router = router or Router()
        self.clock = clock or cloudrun.clock
        self.latency_buckets = latency_buckets  # "exponential" or "explicit"
        self.delay_s = DEFAULT_DELAY_S
        self.alerts = AlertPolicyStore()
        self._lock = threading.Lock()
        self._snapshots: dict[str, list[ServiceSnapshot]] = {}
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._port = 0
        self._host = "127.0.0.1"
        cloudrun.add_listener(self._on_snapshot)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> MonitoringEmulator:
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="emulator-grpc")
        server = grpc.server(self._executor)
        server.add_generic_rpc_handlers(self._handlers())
        self._port = server.add_insecure_port(f"{host}:{port}")
        self._host = host
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    @property
    def host(self) -> str:
        assert self._server is not None, "monitoring emulator not started"
        return f"{self._host}:{self._port}"

    def _handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        def unary(serve: Callable[..., Any], request: Any, response: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                serve,
                request_deserializer=request.deserialize,
                response_serializer=response.serialize,
            )

        m = monitoring_v3
        time_series = unary(
            self._serve_list_time_series, m.ListTimeSeriesRequest, m.ListTimeSeriesResponse
        )
        policies = unary(
            self._serve(POLICIES_API, self.alerts.list_alert_policies),
            m.ListAlertPoliciesRequest,
            m.ListAlertPoliciesResponse,
        )
        channels = unary(
            self._serve(CHANNELS_API, self.alerts.list_notification_channels),
            m.ListNotificationChannelsRequest,
            m.ListNotificationChannelsResponse,
        )
        generic = grpc.method_handlers_generic_handler
        return (
            generic(SERVICE, {"ListTimeSeries": time_series}),
            generic(POLICY_SERVICE, {"ListAlertPolicies": policies}),
            generic(CHANNEL_SERVICE, {"ListNotificationChannels": channels}),
        )

    # -- Python API ---------------------------------------------------------------------------

    def list_time_series(
        self, request: monitoring_v3.ListTimeSeriesRequest
    ) -> monitoring_v3.ListTimeSeriesResponse:
        """Answer a request as the RPC does; raises RpcError for what the API refuses."""
        plan = plan_request(request)
        visible = self.clock() - self.delay_s  # points younger than this are not written yet
        found = self._histories(visible)
        series, token = page(query(plan, found, visible, self._buckets()), plan)
        return to_response(series, token, plan.headers_only)

    def series(self, revision: str, minutes: int = 10) -> dict[str, Any]:
        """Debug view: a revision's history and its raw per-minute numbers, newest first."""
        now = self.clock()
        history = next((h for h in self._histories(now) if h.revision == revision), None)
        if history is None:
            raise KeyError(revision)
        ends = data.minute_ends(now - minutes * data.SAMPLE_PERIOD_S, now)
        return {
            "revision": revision,
            "service": history.service,
            "segments": [asdict(s) for s in history.segments],
            "minutes": [_minute(history.segments, end, self._buckets()) for end in ends[::-1]],
        }

    def _histories(self, now: float) -> list[RevisionHistory]:
        self.cloudrun.settle()  # outside our lock: cloudrun calls _on_snapshot under its own
        with self._lock:
            snapshots = {k: list(v) for k, v in self._snapshots.items()}
        return histories(snapshots, now)

    def _buckets(self) -> data.Buckets:
        return data.BUCKETS[self.latency_buckets]

    def _on_snapshot(self, snapshot: ServiceSnapshot) -> None:
        with self._lock:
            if snapshot.replaced and not snapshot.service:
                self._snapshots.clear()
            elif snapshot.replaced:
                self._snapshots[snapshot.service] = [snapshot]
            else:
                snaps = self._snapshots.setdefault(snapshot.service, [])
                snaps.append(snapshot)
                snaps.sort(key=lambda s: s.at)

    # -- gRPC ---------------------------------------------------------------------------------

    def _serve_list_time_series(
        self, request: monitoring_v3.ListTimeSeriesRequest, context: grpc.ServicerContext
    ) -> monitoring_v3.ListTimeSeriesResponse:
        return self._serve(API, self.list_time_series)(request, context)

    def _serve(
        self, api: str, answer: Callable[[Any], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        """One RPC: recorded under ``api``, its injected faults applied, then answered."""

        def serve(request: Any, context: grpc.ServicerContext) -> Any:
            self._record(api, request)
            try:
                self._apply_fault(api, context)
                return answer(request)
            except RpcError as error:
                context.abort(error.code, error.message)
            except Exception as error:  # an emulator bug must show up as INTERNAL, not a hang
                context.abort(Code.INTERNAL, f"emulator error: {error!r}")
            raise AssertionError("unreachable")  # context.abort always raises

        return serve

    def _record(self, api: str, request: Any) -> None:
        body = type(request).to_dict(request, use_integers_for_enums=False)
        call = RecordedCall(api, "POST", METHOD_PATHS[api], {}, body, time.time())
        self.router.calls.append(call)

    def _apply_fault(self, api: str, context: grpc.ServicerContext) -> None:
        fault = self.router.faults.take(api)
        if fault is None:
            return
        if fault.delay_ms:
            delay = fault.delay_ms / 1000
            remaining = context.time_remaining()
            if remaining is not None and remaining < delay:
                time.sleep(max(0.0, remaining))
                raise RpcError(Code.DEADLINE_EXCEEDED, "Deadline exceeded (injected delay).")
            time.sleep(delay)
        if fault.status is not None:
            raise RpcError(FAULT_CODES.get(int(fault.status), Code.UNKNOWN), fault.message)

    # -- control API --------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        router.add(
            "GET", "/_emulator/monitoring/series", "_emulator.monitoring.series", self._control
        )
        router.add(
            "POST", "/_emulator/monitoring/config", "_emulator.monitoring.config", self._configure
        )
        path, api = "/_emulator/monitoring/alertPolicies", "_emulator.monitoring.alertPolicies"
        router.add("GET", path, api + ".list", self._control_policies)
        router.add("POST", path, api + ".add", self._control_add_policy)
        router.add("DELETE", path, api + ".delete", self._control_remove_policies)

    def _control_policies(self, request: Request) -> Response:
        project = _required(request.arg("project"), "?project=P is required")
        policies = self.alerts.policies(project)
        return json_response([json.loads(monitoring_v3.AlertPolicy.to_json(p)) for p in policies])

    def _control_add_policy(self, request: Request) -> Response:
        """``{"project": P, "policy": AlertPolicy JSON}`` (camelCase, as the REST API takes it)."""
        try:
            body = request.json()
        except ValueError as error:
            raise HttpError(400, "the body must be JSON") from error
        if not isinstance(body, dict):
            raise HttpError(400, 'the body must be {"project": P, "policy": {...}}')
        project = _required(str(body.get("project") or ""), "project is required")
        try:
            policy = monitoring_v3.AlertPolicy.from_json(json.dumps(body.get("policy") or {}))
            stored = self.alerts.add_policy(project, policy)
        except (ValueError, json_format.ParseError) as error:
            raise HttpError(400, f"not an AlertPolicy: {error}") from error
        return json_response(json.loads(monitoring_v3.AlertPolicy.to_json(stored)))

    def _control_remove_policies(self, request: Request) -> Response:
        """``?project=P[&service=S]``: delete the project's policies (those naming S)."""
        project = _required(request.arg("project"), "?project=P is required")
        removed = self.alerts.remove_policies(project, request.arg("service") or None)
        return json_response({"removed": removed})

    def _configure(self, request: Request) -> Response:
        """``{"delay_s": N}``: how old the newest visible point is (default 180)."""
        body = request.json()
        try:
            delay = float(body["delay_s"])
        except (KeyError, TypeError, ValueError) as error:
            raise HttpError(400, "delay_s must be a number of seconds") from error
        if not 0 <= delay <= 3600:
            raise HttpError(400, "delay_s must be between 0 and 3600")
        self.delay_s = delay
        return json_response({"delay_s": self.delay_s})

    def _control(self, request: Request) -> Response:
        revision = request.arg("revision")
        if not revision:
            raise HttpError(400, "?revision=NAME is required")
        try:
            minutes = int(request.arg("minutes") or 10)
        except ValueError as error:
            raise HttpError(400, "minutes must be an integer") from error
        try:
            return json_response(self.series(revision, max(1, min(minutes, 1440))))
        except KeyError as error:
            raise HttpError(404, f"no history for revision '{revision}'") from error


def _required(value: str, message: str) -> str:
    if not value:
        raise HttpError(400, message)
    return value


def _minute(segments: Sequence[data.Segment], end: float, buckets: data.Buckets) -> dict[str, Any]:
    counts = {k: data.count_points(segments, k, [end]) for k in data.CLASSES}
    dists = [
        p.value
        for k in data.CLASSES
        for p in data.latency_points(segments, k, [end], buckets)
        if isinstance(p.value, data.Dist)
    ]
    totals = {
        k: sum(p.value for p in points if isinstance(p.value, int)) for k, points in counts.items()
    }
    requests, errors = sum(totals.values()), totals["5xx"]
    return {
        "end": datetime.fromtimestamp(end, UTC).isoformat(),
        "requests": requests,
        "errors": errors,
        "p95_ms": data.merge(dists).percentile(0.95) if dists else None,
    }
