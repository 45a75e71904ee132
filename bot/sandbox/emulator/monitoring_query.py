"""ListTimeSeries semantics for the Monitoring emulator: the filter, the request's checks,
selecting raw series, aligning, reducing, paging and the response message.

Pure functions over plain data (no I/O, no clock); ``monitoring.MonitoringEmulator`` serves them
over gRPC. Errors are RpcError with the gRPC status the real API would answer with.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from google.api import metric_pb2, monitored_resource_pb2
from google.cloud import monitoring_v3
from google.protobuf import timestamp_pb2

from bot.sandbox.emulator import monitoring_data as data
from bot.sandbox.emulator.cloudrun import ServiceSnapshot

RESOURCE_TYPE = "cloud_run_revision"
REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MIN_ALIGNMENT_S = 60.0
MAX_PAGE_SIZE = 100_000

DELTA, GAUGE = metric_pb2.MetricDescriptor.DELTA, metric_pb2.MetricDescriptor.GAUGE
INT64, DOUBLE = metric_pb2.MetricDescriptor.INT64, metric_pb2.MetricDescriptor.DOUBLE
DISTRIBUTION = metric_pb2.MetricDescriptor.DISTRIBUTION
METRICS = {REQUEST_COUNT: (INT64, "1"), REQUEST_LATENCIES: (DISTRIBUTION, "ms")}

Code = grpc.StatusCode
PERCENTILES = {"99": 0.99, "95": 0.95, "50": 0.50, "05": 0.05}
ALIGNERS = {"ALIGN_NONE", "ALIGN_DELTA", "ALIGN_SUM", "ALIGN_RATE"} | {
    f"ALIGN_PERCENTILE_{p}" for p in PERCENTILES
}
REDUCERS = {"REDUCE_NONE", "REDUCE_SUM", "REDUCE_MEAN", "REDUCE_MIN", "REDUCE_MAX"} | {
    "REDUCE_COUNT",
    *(f"REDUCE_PERCENTILE_{p}" for p in PERCENTILES),
}


class RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RpcError:
    return RpcError(Code.INVALID_ARGUMENT, message)


@dataclass
class Series:
    metric_type: str
    metric_labels: dict[str, str]
    resource_labels: dict[str, str]
    kind: int
    value_type: int
    unit: str
    points: list[data.Point] = field(default_factory=list)  # oldest first

    def field_value(self, name: str) -> str:
        return _field_value(name, self.metric_type, self.metric_labels, self.resource_labels)


# -- the filter -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|\(|\)|,)|(?P<word>[A-Za-z_][\w./-]*))'
)
_FUNCTIONS: dict[str, Callable[[list[str]], Callable[[str], bool]]] = {
    "starts_with": lambda args: lambda v: v.startswith(args[0]),
    "ends_with": lambda args: lambda v: v.endswith(args[0]),
    "has_substring": lambda args: lambda v: args[0] in v,
    "one_of": lambda args: lambda v: v in args,
    "monitoring.regex.full_match": lambda args: lambda v: re.fullmatch(args[0], v) is not None,
}


@dataclass(frozen=True)
class Term:
    field: str  # normalised: metric.type, resource.type, metric.labels.K, resource.labels.K
    negate: bool
    match: Callable[[str], bool]

    def accepts(self, value: str) -> bool:
        return self.match(value) != self.negate


def normalise_field(name: str) -> str:
    if name in ("metric.type", "resource.type"):
        return name
    if name == "project":
        return "resource.labels.project_id"
    match = re.fullmatch(r"(metric|resource)\.labels?\.([A-Za-z_][\w]*)", name)
    if not match:
        raise invalid(f"The filter field '{name}' is not supported.")
    return f"{match.group(1)}.labels.{match.group(2)}"


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise invalid(f"Could not parse the filter at offset {position}: {text[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _unquote(token: str) -> str:
    try:
        return str(json.loads(token))
    except ValueError as error:
        raise invalid(f"Bad string literal in filter: {token}") from error


class _FilterParser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    def next(self, expected: str = "") -> tuple[str, str]:
        if self.index >= len(self.tokens):
            raise invalid(f"The filter ends early{': expected ' + expected if expected else ''}.")
        token = self.tokens[self.index]
        self.index += 1
        return token

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def terms(self) -> list[Term]:
        terms = [self.term()]
        while self.peek() is not None:
            if self.peek() == ("word", "AND"):
                self.index += 1
            terms.append(self.term())
        return terms

    def term(self) -> Term:
        kind, text = self.next("a field")
        if (kind, text) in (("word", "OR"), ("word", "NOT"), ("op", "(")):
            raise RpcError(Code.UNIMPLEMENTED, "The emulator supports only AND of comparisons.")
        if kind != "word":
            raise invalid(f"Expected a field name in the filter, found {text!r}.")
        name = normalise_field(text)
        op_kind, op = self.next("'=' or '!='")
        if op_kind != "op" or op not in ("=", "!="):
            raise invalid(f"Expected '=' or '!=' after {text}, found {op!r}.")
        return Term(name, op == "!=", self.value())

    def value(self) -> Callable[[str], bool]:
        kind, text = self.next("a value")
        if kind == "string":
            literal = _unquote(text)
            return lambda v: v == literal
        if kind == "word" and text in _FUNCTIONS:
            return _FUNCTIONS[text](self.arguments(text))
        raise invalid(f"Expected a quoted string or a function in the filter, found {text!r}.")

    def arguments(self, function: str) -> list[str]:
        if self.next("'('") != ("op", "("):
            raise invalid(f"Expected '(' after {function}.")
        args: list[str] = []
        while True:
            kind, text = self.next("a quoted string")
            if kind != "string":
                raise invalid(f"Arguments of {function} must be quoted strings.")
            args.append(_unquote(text))
            separator = self.next("',' or ')'")
            if separator == ("op", ")"):
                return args
            if separator != ("op", ","):
                raise invalid(f"Expected ',' or ')' in {function}(...).")


def parse_filter(text: str) -> list[Term]:
    if not text.strip():
        raise invalid("The filter is required.")
    terms = _FilterParser(text).terms()
    if not any(t.field == "metric.type" and not t.negate for t in terms):
        raise invalid('A filter must specify a metric type (metric.type = "...").')
    return terms


def _field_value(
    name: str, metric_type: str, metric_labels: dict[str, str], resource_labels: dict[str, str]
) -> str:
    if name == "metric.type":
        return metric_type
    if name == "resource.type":
        return RESOURCE_TYPE
    scope, _, key = name.split(".", 2)
    return (metric_labels if scope == "metric" else resource_labels).get(key, "")


# -- the request ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A validated ListTimeSeries request."""

    project: str
    terms: tuple[Term, ...]
    start: float
    end: float
    aligner: str
    period: float
    reducer: str
    group_by: tuple[str, ...]
    headers_only: bool
    page_size: int
    offset: int


def plan_request(request: monitoring_v3.ListTimeSeriesRequest) -> Plan:
    start, end = _interval(request)
    aligner, period, reducer, group_by = _aggregation(request)
    if "secondary_aggregation" in request:
        raise RpcError(Code.UNIMPLEMENTED, "secondary_aggregation is not supported here.")
    if request.page_size < 0:
        raise invalid("page_size must not be negative.")
    return Plan(
        project=_project(request.name),
        terms=tuple(parse_filter(request.filter)),
        start=start,
        end=end,
        aligner=aligner,
        period=period,
        reducer=reducer,
        group_by=group_by,
        headers_only=request.view == monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS,
        page_size=min(request.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        offset=_offset(request.page_token),
    )


def _project(name: str) -> str:
    match = re.fullmatch(r"projects/([^/]+)", name)
    if match:
        return match.group(1)
    if re.fullmatch(r"(organizations|folders)/[^/]+", name):
        raise RpcError(Code.UNIMPLEMENTED, "The emulator serves projects/* only.")
    raise invalid(f"Name '{name}' is not a valid resource name (projects/PROJECT_ID).")


def _interval(request: monitoring_v3.ListTimeSeriesRequest) -> tuple[float, float]:
    if "interval" not in request or "end_time" not in request.interval:
        raise invalid("interval.end_time is required.")
    end = request.interval.end_time.timestamp()
    start = request.interval.start_time.timestamp() if "start_time" in request.interval else end
    if start > end:
        raise invalid("The start time must be before the end time.")
    return start, end


def _aggregation(
    request: monitoring_v3.ListTimeSeriesRequest,
) -> tuple[str, float, str, tuple[str, ...]]:
    aggregation = request.aggregation
    aligner = monitoring_v3.Aggregation.Aligner(aggregation.per_series_aligner).name
    reducer = monitoring_v3.Aggregation.Reducer(aggregation.cross_series_reducer).name
    period = (
        aggregation.alignment_period.total_seconds() if "alignment_period" in aggregation else 0
    )
    if aligner not in ALIGNERS:
        raise RpcError(Code.UNIMPLEMENTED, f"The emulator does not support {aligner}.")
    if reducer not in REDUCERS:
        raise RpcError(Code.UNIMPLEMENTED, f"The emulator does not support {reducer}.")
    if aligner == "ALIGN_NONE":
        if reducer != "REDUCE_NONE":
            raise invalid(
                "A cross_series_reducer needs a per_series_aligner other than ALIGN_NONE."
            )
        return aligner, 0.0, reducer, ()
    if period < MIN_ALIGNMENT_S:
        raise invalid("The alignment period must be at least 60 seconds.")
    group_by = tuple(_group_field(f) for f in aggregation.group_by_fields)
    return aligner, period, reducer, group_by if reducer != "REDUCE_NONE" else ()


def _group_field(name: str) -> str:
    if name in ("resource.type", "metric.type"):
        return name
    if not re.fullmatch(r"(metric|resource)\.labels?\.[A-Za-z_]\w*", name):
        raise invalid(f"group_by_fields: '{name}' is not a metric or resource label.")
    return normalise_field(name)


def _offset(token: str) -> int:
    if not token:
        return 0
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "series":
            raise ValueError(token)
        return int(number)
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid("The page token is not valid.") from error


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"series:{offset}".encode()).decode()


# -- selecting, aligning and reducing ---------------------------------------------------------


@dataclass(frozen=True)
class RevisionHistory:
    service: str  # full name
    revision: str
    segments: tuple[data.Segment, ...]

    def resource_labels(self) -> dict[str, str]:
        parts = self.service.split("/")
        return {
            "project_id": parts[1],
            "location": parts[3],
            "service_name": parts[5],
            "configuration_name": parts[5],
            "revision_name": self.revision,
        }


def histories(snapshots: dict[str, list[ServiceSnapshot]], until: float) -> list[RevisionHistory]:
    """Every revision's segments up to ``until``, from each service's snapshots."""
    found = []
    for service, snaps in sorted(snapshots.items()):
        revisions = sorted({r for s in snaps for r in s.behaviours})
        for revision in revisions:
            found.append(RevisionHistory(service, revision, _segments(snaps, revision, until)))
    return found


def _segments(
    snaps: Sequence[ServiceSnapshot], revision: str, until: float
) -> tuple[data.Segment, ...]:
    segments = []
    for index, snap in enumerate(snaps):
        end = min(snaps[index + 1].at if index + 1 < len(snaps) else until, until)
        behaviour = snap.behaviours.get(revision)
        share = snap.shares.get(revision, 0) / 100
        if end <= snap.at or behaviour is None or share <= 0 or behaviour.rps <= 0:
            continue
        rate = behaviour.rps * share
        segments.append(data.Segment(snap.at, end, rate, behaviour.error_rate, behaviour.p95_ms))
    return tuple(segments)


def raw_series(
    plan: Plan, found: list[RevisionHistory], ends: list[float], buckets: data.Buckets
) -> list[Series]:
    """The raw series the filter selects, with their points at the given minute ends."""
    series = []
    for history in found:
        resource = history.resource_labels()
        if resource["project_id"] != plan.project:
            continue
        for metric_type, (value_type, unit) in METRICS.items():
            if not _accepts(plan.terms, metric_type, {}, resource, skip_metric_labels=True):
                continue
            for klass, code in data.CLASSES.items():
                labels = {"response_code": code, "response_code_class": klass}
                if not _accepts(plan.terms, metric_type, labels, resource):
                    continue
                points = _raw_points(history.segments, metric_type, klass, ends, buckets)
                if points:
                    series.append(
                        Series(metric_type, labels, resource, DELTA, value_type, unit, points)
                    )
    return series


def _raw_points(
    segments: Sequence[data.Segment],
    metric_type: str,
    klass: str,
    ends: list[float],
    buckets: data.Buckets,
) -> list[data.Point]:
    if not segments:
        return []
    if metric_type == REQUEST_COUNT:
        return data.count_points(segments, klass, ends)
    return data.latency_points(segments, klass, ends, buckets)


def _accepts(
    terms: Sequence[Term],
    metric_type: str,
    metric_labels: dict[str, str],
    resource_labels: dict[str, str],
    skip_metric_labels: bool = False,
) -> bool:
    for term in terms:
        if skip_metric_labels and term.field.startswith("metric.labels."):
            continue
        value = _field_value(term.field, metric_type, metric_labels, resource_labels)
        if not term.accepts(value):
            return False
    return True


def bucket_ends(plan: Plan) -> list[float]:
    """Ends of the aligned periods, oldest first."""
    ends = [plan.end]
    while ends[-1] - plan.period > plan.start:
        ends.append(ends[-1] - plan.period)
    return ends[::-1]


def align(series: Series, plan: Plan, ends: list[float]) -> Series | None:
    """One point per aligned period that has raw points; None when none has."""
    kind, value_type, unit = _aligned_type(series, plan.aligner)
    points = []
    for end in ends:
        inside = [p for p in series.points if end - plan.period < p.end <= end]
        if inside:
            points.append(_aligned_point(series, plan, end, inside))
    if not points:
        return None
    return replace(series, kind=kind, value_type=value_type, unit=unit, points=points)


def _aligned_type(series: Series, aligner: str) -> tuple[int, int, str]:
    if aligner.startswith("ALIGN_PERCENTILE_"):
        if series.value_type != DISTRIBUTION:
            raise invalid(f"{aligner} needs a DISTRIBUTION metric; {series.metric_type} is not.")
        return GAUGE, DOUBLE, series.unit
    if aligner == "ALIGN_RATE":
        if series.value_type == DISTRIBUTION:
            raise invalid(f"ALIGN_RATE is not valid for DISTRIBUTION metric {series.metric_type}.")
        return GAUGE, DOUBLE, f"{series.unit}/s"
    return DELTA, series.value_type, series.unit


def _aligned_point(series: Series, plan: Plan, end: float, inside: list[data.Point]) -> data.Point:
    values = [p.value for p in inside]
    aligner = plan.aligner
    if aligner.startswith("ALIGN_PERCENTILE_"):
        dist = data.merge([v for v in values if isinstance(v, data.Dist)])
        q = PERCENTILES[aligner.rsplit("_", 1)[1]]
        return data.Point(end, end, float(dist.percentile(q) or 0.0))
    if series.value_type == DISTRIBUTION:
        merged = data.merge([v for v in values if isinstance(v, data.Dist)])
        return data.Point(end - plan.period, end, merged)
    total = sum(v for v in values if not isinstance(v, data.Dist))
    if aligner == "ALIGN_RATE":
        return data.Point(end, end, total / plan.period)
    return data.Point(end - plan.period, end, total)


def reduce_series(series: list[Series], plan: Plan) -> list[Series]:
    groups: dict[tuple[str, ...], list[Series]] = {}
    for one in series:
        key = tuple(one.field_value(f) for f in plan.group_by)
        groups.setdefault(key, []).append(one)
    return [_reduce_group(members, plan) for _, members in sorted(groups.items())]


def _reduce_group(members: list[Series], plan: Plan) -> Series:
    first = members[0]
    value_type = _reduced_type(plan.reducer, first.value_type)
    by_end: dict[float, list[data.Point]] = {}
    for member in members:
        for point in member.points:
            by_end.setdefault(point.end, []).append(point)
    points = [_reduced_point(plan.reducer, first, by_end[e]) for e in sorted(by_end)]
    return Series(
        metric_type=first.metric_type,
        metric_labels=_kept(plan.group_by, "metric.labels.", first.metric_labels),
        resource_labels=_kept(plan.group_by, "resource.labels.", first.resource_labels),
        kind=first.kind,
        value_type=value_type,
        unit="1" if plan.reducer == "REDUCE_COUNT" else first.unit,
        points=points,
    )


def _kept(group_by: Sequence[str], prefix: str, labels: dict[str, str]) -> dict[str, str]:
    keys = {f[len(prefix) :] for f in group_by if f.startswith(prefix)}
    return {k: v for k, v in labels.items() if k in keys}


def _reduced_type(reducer: str, value_type: int) -> int:
    if reducer == "REDUCE_COUNT":
        return INT64
    if reducer in ("REDUCE_MEAN",) or reducer.startswith("REDUCE_PERCENTILE_"):
        return DOUBLE
    if reducer in ("REDUCE_MIN", "REDUCE_MAX") and value_type == DISTRIBUTION:
        raise invalid(f"{reducer} is not valid for DISTRIBUTION values.")
    return value_type


def _reduced_point(reducer: str, first: Series, points: list[data.Point]) -> data.Point:
    start, end = points[0].start, points[0].end
    values = [p.value for p in points]
    if reducer == "REDUCE_COUNT":
        return data.Point(start, end, len(values))
    if first.value_type == DISTRIBUTION:
        merged = data.merge([v for v in values if isinstance(v, data.Dist)])
        return data.Point(start, end, _reduce_dist(reducer, merged))
    numbers = [float(v) for v in values if not isinstance(v, data.Dist)]
    return data.Point(start, end, _reduce_numbers(reducer, numbers, first.value_type))


def _reduce_dist(reducer: str, merged: data.Dist) -> data.Value:
    if reducer == "REDUCE_SUM":
        return merged
    if reducer == "REDUCE_MEAN":
        return merged.mean
    return float(merged.percentile(PERCENTILES[reducer.rsplit("_", 1)[1]]) or 0.0)


def _reduce_numbers(reducer: str, numbers: list[float], value_type: int) -> data.Value:
    if reducer == "REDUCE_MEAN":
        return sum(numbers) / len(numbers)
    if reducer.startswith("REDUCE_PERCENTILE_"):
        return data.values_percentile(numbers, PERCENTILES[reducer.rsplit("_", 1)[1]])
    reducers: dict[str, Callable[[list[float]], float]] = {
        "REDUCE_SUM": sum,
        "REDUCE_MIN": min,
        "REDUCE_MAX": max,
    }
    result = reducers[reducer](numbers)
    return int(result) if value_type == INT64 else float(result)


# -- answering --------------------------------------------------------------------------------


def query(
    plan: Plan, found: list[RevisionHistory], now: float, buckets: data.Buckets
) -> list[Series]:
    """The series a request asks for, before paging."""
    if plan.aligner == "ALIGN_NONE":
        lo = plan.start if plan.start < plan.end else plan.end - 1e-9
        return raw_series(plan, found, data.minute_ends(lo, min(plan.end, now)), buckets)
    ends = bucket_ends(plan)
    raw = raw_series(
        plan, found, data.minute_ends(ends[0] - plan.period, min(plan.end, now)), buckets
    )
    aligned = [a for a in (align(s, plan, ends) for s in raw) if a is not None]
    if plan.reducer == "REDUCE_NONE":
        return aligned
    return reduce_series(aligned, plan)


def page(series: list[Series], plan: Plan) -> tuple[list[Series], str]:
    if plan.offset > len(series):
        raise invalid("The page token is not valid.")
    chosen: list[Series] = []
    points = 0
    for one in series[plan.offset :]:
        cost = 1 if plan.headers_only else len(one.points)
        if chosen and points + cost > plan.page_size:
            break
        chosen.append(one)
        points += cost
    end = plan.offset + len(chosen)
    return chosen, _token(end) if end < len(series) else ""


def to_response(
    series: list[Series], token: str, headers_only: bool
) -> monitoring_v3.ListTimeSeriesResponse:
    response_pb = monitoring_v3.ListTimeSeriesResponse.pb()(
        time_series=[_series_pb(s, headers_only) for s in series],
        next_page_token=token,
        unit=_unit(series),
    )
    return monitoring_v3.ListTimeSeriesResponse.wrap(response_pb)


def _unit(series: list[Series]) -> str:
    units = {s.unit for s in series}
    if len(units) > 1:
        return "{not_a_unit}"
    return units.pop() if units else ""


def _series_pb(series: Series, headers_only: bool) -> Any:
    return monitoring_v3.TimeSeries.pb()(
        metric=metric_pb2.Metric(type=series.metric_type, labels=series.metric_labels),
        resource=monitored_resource_pb2.MonitoredResource(
            type=RESOURCE_TYPE, labels=series.resource_labels
        ),
        metric_kind=series.kind,
        value_type=series.value_type,
        unit=series.unit,
        points=[] if headers_only else [_point_pb(p) for p in reversed(series.points)],
    )


def _point_pb(point: data.Point) -> Any:
    value = monitoring_v3.TypedValue.pb()()
    if isinstance(point.value, data.Dist):
        value.distribution_value.CopyFrom(point.value.to_pb())
    elif isinstance(point.value, int):
        value.int64_value = point.value
    else:
        value.double_value = point.value
    interval = monitoring_v3.TimeInterval.pb()(
        start_time=_timestamp(point.start), end_time=_timestamp(point.end)
    )
    return monitoring_v3.Point.pb()(interval=interval, value=value)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp
