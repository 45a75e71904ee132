"""The Monitoring emulator's data: time series synthesised from the Cloud Run emulator's history.

Pure functions and plain data, no I/O. A revision's history is a list of Segments (constant
request rate, error rate and P95 between two changes); from them the raw Cloud Run points are
derived the way Cloud Run writes them, one DELTA point per minute (epoch-aligned), each
covering ``(m - 60, m]``:

- ``run.googleapis.com/request_count`` (INT64): one series per response code class, 2xx
  (code 200) and 5xx (code 500); a minute without such requests has no point.
- ``run.googleapis.com/request_latencies`` (DISTRIBUTION, ms): the same split; each minute's
  distribution is a log-normal whose 95th percentile, as read back from the buckets, is the
  revision's ``p95_ms``.

Counts are cumulative expected counts rounded at each minute boundary, so a sum over any run of
minutes is off by less than one request (per bucket), however it is sliced.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from google.api import distribution_pb2

SAMPLE_PERIOD_S = 60  # Cloud Run writes one point per minute
LATENCY_SIGMA = 0.5  # spread of the synthetic log-normal latency distribution
CLASSES = {"2xx": "200", "5xx": "500"}  # response_code_class -> the response_code used


@dataclass(frozen=True)
class Buckets:
    """Finite bucket bounds: bucket 0 is (-inf, b0), bucket i is [b(i-1), b(i)), the last is
    [b(-1), +inf); ``spec`` is what goes into a Distribution's ``bucket_options``."""

    bounds: tuple[float, ...]
    kind: str  # "exponential" or "explicit"
    growth_factor: float = 0.0
    scale: float = 0.0

    @staticmethod
    def exponential(num_finite: int, growth_factor: float, scale: float) -> Buckets:
        bounds = tuple(scale * growth_factor**i for i in range(num_finite + 1))
        return Buckets(bounds, "exponential", growth_factor, scale)

    @staticmethod
    def explicit(bounds: Sequence[float]) -> Buckets:
        return Buckets(tuple(float(b) for b in bounds), "explicit")

    @property
    def size(self) -> int:
        return len(self.bounds) + 1

    def options(self) -> distribution_pb2.Distribution.BucketOptions:
        options = distribution_pb2.Distribution.BucketOptions()
        if self.kind == "exponential":
            exp = options.exponential_buckets
            exp.num_finite_buckets = len(self.bounds) - 1
            exp.growth_factor = self.growth_factor
            exp.scale = self.scale
        else:
            options.explicit_buckets.bounds.extend(self.bounds)
        return options

    def edges(self, index: int) -> tuple[float, float]:
        """(lower, upper) of a bucket for interpolation; latencies are never negative."""
        lower = min(0.0, self.bounds[0]) if index == 0 else self.bounds[index - 1]
        upper = self.bounds[index] if index < len(self.bounds) else lower
        return lower, upper


EXPONENTIAL = Buckets.exponential(64, 1.4, 1.0)
EXPLICIT = Buckets.explicit(
    [0, 5, 10, 25, 50, 100, 200, 300, 400, 500, 650, 800, 1000, 1250, 1500, 1750, 2000,
     2250, 2500, 3000, 4000, 5000, 7500, 10000, 20000, 60000]
)  # fmt: skip
BUCKETS = {"exponential": EXPONENTIAL, "explicit": EXPLICIT}


@dataclass(frozen=True)
class Segment:
    """A stretch of a revision's life with constant traffic and behaviour."""

    start: float
    end: float
    rate: float  # requests per second actually received (rps x traffic share)
    error_rate: float
    p95_ms: float

    def overlap(self, lo: float, hi: float) -> float:
        return max(0.0, min(hi, self.end) - max(lo, self.start))

    def fraction(self, klass: str) -> float:
        return self.error_rate if klass == "5xx" else 1.0 - self.error_rate


@dataclass(frozen=True)
class Dist:
    """A distribution value: bucket counts (over ``buckets``), mean, sum of squared deviation."""

    counts: tuple[int, ...]
    mean: float
    ssd: float
    buckets: Buckets

    @property
    def count(self) -> int:
        return sum(self.counts)

    def percentile(self, q: float) -> float | None:
        return histogram_percentile(self.counts, self.buckets, q)

    def to_pb(self) -> distribution_pb2.Distribution:
        counts = list(self.counts)
        while counts and counts[-1] == 0:  # trailing zero buckets may be left out
            counts.pop()
        return distribution_pb2.Distribution(
            count=self.count,
            mean=self.mean,
            sum_of_squared_deviation=self.ssd,
            bucket_options=self.buckets.options(),
            bucket_counts=counts,
        )


Value = int | float | Dist


@dataclass(frozen=True)
class Point:
    start: float
    end: float
    value: Value


def merge(dists: Sequence[Dist]) -> Dist:
    """The distribution of all the values of ``dists`` together."""
    live = [d for d in dists if d.count]
    if not live:
        return dists[0]
    total = sum(d.count for d in live)
    mean = sum(d.mean * d.count for d in live) / total
    ssd = sum(d.ssd + d.count * (d.mean - mean) ** 2 for d in live)
    counts = tuple(sum(column) for column in zip(*(d.counts for d in live), strict=True))
    return Dist(counts, mean, ssd, live[0].buckets)


def histogram_percentile(counts: Sequence[float], buckets: Buckets, q: float) -> float | None:
    """The ``q`` quantile read from bucket counts, interpolating linearly inside the bucket."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            lower, upper = buckets.edges(index)
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return buckets.edges(len(counts) - 1)[0]


def values_percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of plain values, interpolating linearly between neighbours."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


# -- the synthetic latency shape --------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A log-normal latency distribution as bucket probabilities, with its mean and variance."""

    probabilities: tuple[float, ...]
    mean: float
    variance: float


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _probabilities(mu: float, buckets: Buckets) -> tuple[float, ...]:
    def cdf(x: float) -> float:
        return 0.0 if x <= 0 else _normal_cdf((math.log(x) - mu) / LATENCY_SIGMA)

    cdfs = [0.0, *(cdf(b) for b in buckets.bounds), 1.0]
    return tuple(hi - lo for lo, hi in itertools.pairwise(cdfs))


@lru_cache(maxsize=512)
def latency_shape(p95_ms: float, buckets: Buckets) -> Shape:
    """The log-normal whose bucketed 95th percentile (linear interpolation) is ``p95_ms``."""
    target = max(p95_ms, 1e-3)
    lo, hi = math.log(target) - 6.0, math.log(target) + 2.0
    for _ in range(60):
        mid = (lo + hi) / 2
        read = histogram_percentile(_probabilities(mid, buckets), buckets, 0.95) or 0.0
        lo, hi = (mid, hi) if read < target else (lo, mid)
    mu = (lo + hi) / 2
    s2 = LATENCY_SIGMA**2
    mean = math.exp(mu + s2 / 2)
    variance = (math.exp(s2) - 1) * math.exp(2 * mu + s2)
    return Shape(_probabilities(mu, buckets), mean, variance)


# -- raw points from a revision's segments ----------------------------------------------------


def minute_ends(lo: float, hi: float) -> list[float]:
    """Epoch-aligned minute ends ``m`` with ``lo < m <= hi``."""
    first = (math.floor(lo / SAMPLE_PERIOD_S) + 1) * SAMPLE_PERIOD_S
    return [float(m) for m in range(first, math.floor(hi) + 1, SAMPLE_PERIOD_S)]


def _boundaries(ends: Sequence[float]) -> set[float]:
    """Every minute end and minute start of ``ends`` (each computed once)."""
    return {*ends, *(end - SAMPLE_PERIOD_S for end in ends)}


def _expected(segments: Sequence[Segment], klass: str, until: float) -> float:
    return sum(s.rate * s.fraction(klass) * s.overlap(-math.inf, until) for s in segments)


def count_points(segments: Sequence[Segment], klass: str, ends: Sequence[float]) -> list[Point]:
    """request_count points of one response class at the given minute ends (zeros left out)."""
    cumulative = {t: round(_expected(segments, klass, t)) for t in _boundaries(ends)}
    points = []
    for end in ends:
        start = end - SAMPLE_PERIOD_S
        value = cumulative[end] - cumulative[start]
        if value > 0:
            points.append(Point(start, end, value))
    return points


def _expected_buckets(
    segments: Sequence[Segment], klass: str, until: float, buckets: Buckets
) -> list[int]:
    totals = [0.0] * buckets.size
    for segment in segments:
        weight = segment.rate * segment.fraction(klass) * segment.overlap(-math.inf, until)
        if weight <= 0:
            continue
        shape = latency_shape(segment.p95_ms, buckets)
        for index, probability in enumerate(shape.probabilities):
            totals[index] += weight * probability
    return [round(total) for total in totals]


def _moments(
    segments: Sequence[Segment], klass: str, lo: float, hi: float, buckets: Buckets
) -> tuple[float, float]:
    """Mean and variance of the latencies of one class served in ``(lo, hi]``."""
    weights = [(s.rate * s.fraction(klass) * s.overlap(lo, hi), s) for s in segments]
    weights = [(w, s) for w, s in weights if w > 0]
    if not weights:
        return 0.0, 0.0
    total = sum(w for w, _ in weights)
    shapes = [(w, latency_shape(s.p95_ms, buckets)) for w, s in weights]
    mean = sum(w * shape.mean for w, shape in shapes) / total
    second = sum(w * (shape.variance + shape.mean**2) for w, shape in shapes) / total
    return mean, max(0.0, second - mean**2)


def latency_points(
    segments: Sequence[Segment], klass: str, ends: Sequence[float], buckets: Buckets
) -> list[Point]:
    """request_latencies points (distributions, ms) of one response class."""
    cumulative = {t: _expected_buckets(segments, klass, t, buckets) for t in _boundaries(ends)}
    points = []
    for end in ends:
        start = end - SAMPLE_PERIOD_S
        pairs = zip(cumulative[end], cumulative[start], strict=True)
        counts = tuple(max(0, after - before) for after, before in pairs)
        if sum(counts):
            mean, variance = _moments(segments, klass, start, end, buckets)
            points.append(Point(start, end, Dist(counts, mean, variance * sum(counts), buckets)))
    return points
