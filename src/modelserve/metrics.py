"""Prometheus metrics: the definitions, what one request records, and the ``/metrics`` text.

Under a production server every worker writes its own files in prometheus_client's
multiprocess mode and a scrape (in whichever worker answers it) sums them all
(:mod:`modelserve.multiproc`); in a single process (the development server, tests) the values
live in memory. Import this module only where metrics are recorded (a worker's app): importing
prometheus_client in the server's main process before it prepared the multiprocess folder
would fix single-process mode in every worker it forks.

Histogram buckets reach down to 100 µs: a compiled model answers in well under a millisecond.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from typing import Literal

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from . import multiproc
from . import telemetry

#: modelserve's own registry: nothing else registers here, and in-process tests that build
#: several apps share one set of metrics.
REGISTRY = CollectorRegistry(auto_describe=True)

#: Seconds, from 100 µs (a compiled model's call) to 10 s.
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Rows, from one to the largest batches.
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 10000)
#: Seconds a model version takes to load and warm up.
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_REQUEST_LABELS = ("route", "model", "version", "protocol", "status")
_MODEL_LABELS = ("model", "version")

REQUESTS = Counter(
    "modelserve_requests_total",
    "HTTP requests answered, by route (URL rule), model, version, protocol and status.",
    _REQUEST_LABELS,
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "modelserve_request_duration_seconds",
    "Time from the start of a request's handling to its response, in the app.",
    ("route", "model", "version"),
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "modelserve_requests_in_flight",
    "Requests being handled now, summed over the running workers.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
QUEUE_WAIT = Histogram(
    "modelserve_queue_wait_seconds",
    "Time a request waited in the batcher's queue before its model call started.",
    _MODEL_LABELS,
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
MODEL_CALL = Histogram(
    "modelserve_model_call_seconds",
    "Duration of the model call that answered a request (shared by a batch).",
    _MODEL_LABELS,
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "modelserve_batch_size",
    "Rows in the model call that answered a request (its own rows when not batched).",
    _MODEL_LABELS,
    buckets=ROW_BUCKETS,
    registry=REGISTRY,
)
REQUEST_ROWS = Histogram(
    "modelserve_request_rows",
    "Rows (instances, images) in one inference request.",
    _MODEL_LABELS,
    buckets=ROW_BUCKETS,
    registry=REGISTRY,
)
CACHE_HITS = Counter(
    "modelserve_cache_hits_total",
    "Requests answered from the prediction cache.",
    _MODEL_LABELS,
    registry=REGISTRY,
)
CACHE_MISSES = Counter(
    "modelserve_cache_misses_total",
    "Requests to a cached model whose answer was not in the cache.",
    _MODEL_LABELS,
    registry=REGISTRY,
)
MODEL_LOAD = Histogram(
    "modelserve_model_load_seconds",
    "Time to load a model version and answer its warm-up (each worker loads its own copy).",
    ("model",),
    buckets=LOAD_BUCKETS,
    registry=REGISTRY,
)
MODEL_LOAD_FAILURES = Counter(
    "modelserve_model_load_failures_total",
    "Model versions that failed to load (counted in each worker that tried).",
    ("model",),
    registry=REGISTRY,
)
VERSION_LOADED = Gauge(
    "modelserve_model_version_loaded",
    "1 while a running worker serves this model version, else 0.",
    _MODEL_LABELS,
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
RATE_LIMITED = Counter(
    "modelserve_rate_limited_total",
    "Requests refused by the rate limit (429).",
    registry=REGISTRY,
)
UNAUTHENTICATED = Counter(
    "modelserve_unauthenticated_total",
    "Requests refused for a missing or unknown API key (401).",
    registry=REGISTRY,
)

RefusedKind = Literal["rate_limited", "unauthenticated"]
_REFUSED = {"rate_limited": RATE_LIMITED, "unauthenticated": UNAUTHENTICATED}


class _Recorder:
    """One labelled child's update without prometheus_client's per-call checks.

    A child's ``inc``/``observe`` checks that it is observable and the amount's sign, and a
    histogram scans its buckets in Python; each request makes several of these calls. Here
    the child's value objects
    (``_value``, ``_sum``, ``_buckets``: the same ones ``inc``/``observe`` update, in memory
    or in the worker's mmap file) are bound once, and a bucket is found by bisection.
    A client without those attributes gets the child's own methods.
    """

    __slots__ = ("inc", "observe", "_sum_inc", "_bounds", "_bucket_incs")

    def __init__(self, child: Counter | Gauge | Histogram) -> None:
        self.inc: Callable[[float], None] = getattr(child, "inc", _no_update)
        self.observe: Callable[[float], None] = getattr(child, "observe", _no_update)
        value = getattr(child, "_value", None)
        if value is not None and isinstance(child, Counter | Gauge):
            self.inc = value.inc
        total = getattr(child, "_sum", None)
        buckets = getattr(child, "_buckets", None)
        bounds = getattr(child, "_upper_bounds", None)
        if total is not None and buckets is not None and bounds is not None:
            self._sum_inc = total.inc
            self._bounds = list(bounds)  # ascending, the last +Inf: every amount has one
            self._bucket_incs = [bucket.inc for bucket in buckets]
            self.observe = self._observe

    def _observe(self, amount: float) -> None:
        self._sum_inc(amount)
        # The first bucket whose upper bound is >= amount, as Histogram.observe's scan finds.
        self._bucket_incs[bisect_left(self._bounds, amount)](1)


def _no_update(amount: float) -> None:  # pragma: no cover - every child has its own method
    raise TypeError("this metric has no such update")


# The labelled children of each label set, resolved once: ``.labels()`` builds and locks on
# every call, and these lookups are on every request. A race only resolves a child twice.
_request_series: dict[tuple[str, str, str, str, int], tuple[_Recorder, _Recorder]] = {}
_model_series: dict[tuple[str, str], tuple[_Recorder, _Recorder, _Recorder, _Recorder]] = {}
_in_flight = _Recorder(IN_FLIGHT)


def count_refused(kind: RefusedKind) -> None:
    """Count one request refused by the security layer (``rate_limited`` or
    ``unauthenticated``)."""
    _REFUSED[kind].inc()


def request_started() -> None:
    _in_flight.inc(1)


def request_closed() -> None:
    """The request is over (answered or not)."""
    _in_flight.inc(-1)


def request_finished(
    route: str, protocol: str, status: int, record: telemetry.RequestRecord, seconds: float
) -> None:
    """Record one answered request from what the core reported in its ``record``."""
    model = record.model or ""
    version = record.version or ""
    key = (route, protocol, model, version, status)
    series = _request_series.get(key)
    if series is None:
        series = _request_series[key] = (
            _Recorder(REQUESTS.labels(route, model, version, protocol, str(status))),
            _Recorder(REQUEST_DURATION.labels(route, model, version)),
        )
    series[0].inc(1)
    series[1].observe(seconds)
    if record.model is None:
        return  # no model served it (health, listings, an unknown model)
    by_model = _model_series.get((model, version))
    if by_model is None:
        by_model = _model_series[(model, version)] = (
            _Recorder(REQUEST_ROWS.labels(model, version)),
            _Recorder(BATCH_SIZE.labels(model, version)),
            _Recorder(QUEUE_WAIT.labels(model, version)),
            _Recorder(MODEL_CALL.labels(model, version)),
        )
    rows, batch, queue, call = by_model
    if record.rows is not None:
        rows.observe(record.rows)
    if record.batch_size is not None:
        batch.observe(record.batch_size)
    if record.queue_seconds is not None:
        queue.observe(record.queue_seconds)
    if record.model_seconds is not None:
        call.observe(record.model_seconds)
    if record.cache_hit is not None:
        # Resolved here only: an uncached model gets no cache series at all.
        (CACHE_HITS if record.cache_hit else CACHE_MISSES).labels(model, version).inc()


class MetricsObserver(telemetry.Observer):
    """Model loads, load failures and served versions, as metrics."""

    def model_loaded(self, name: str, version: int, seconds: float) -> None:
        MODEL_LOAD.labels(name).observe(seconds)

    def model_load_failed(self, name: str, version: int) -> None:
        MODEL_LOAD_FAILURES.labels(name).inc()

    def version_serving(self, name: str, version: int, serving: bool) -> None:
        VERSION_LOADED.labels(name, str(version)).set(1 if serving else 0)


def install() -> None:
    """Record this process's model events from now on (before the models load)."""
    if not isinstance(telemetry.observer(), MetricsObserver):
        telemetry.set_observer(MetricsObserver())


@contextmanager
def _scraped() -> Iterator[CollectorRegistry]:
    """A registry holding every worker's values, for the time of the ``with`` block.

    In multiprocess mode the files of dead workers are folded into the archives first, under
    the folder's lock, so a scrape never reads a file that is being folded away.
    """
    path = multiproc.directory()
    if path is None:
        yield REGISTRY
        return
    with multiproc.locked(path):
        multiproc.compact(path)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
        yield registry


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of every worker's metrics, and its content type."""
    with _scraped() as registry:
        return generate_latest(registry), CONTENT_TYPE_LATEST


#: The ``protocol`` labels of inference requests: what a model's statistics count.
INFERENCE_PROTOCOLS = frozenset({"seed", "v2"})
#: The metric families (names without ``_total``) that :func:`model_stats` reads.
_REQUESTS_FAMILY = "modelserve_requests"
_STATS_FAMILIES = frozenset({_REQUESTS_FAMILY, "modelserve_request_duration_seconds"})
#: The quantiles :func:`model_stats` estimates from the latency histogram.
QUANTILES = (0.5, 0.95, 0.99)


def model_stats(name: str) -> dict[str, Any]:
    """The inference requests one model answered since the server started, every worker's.

    Counts by status and by version, and the latency histogram with estimated quantiles, read
    from the same metrics as ``/metrics`` (so the web page needs no Prometheus). A rate is
    the difference of two readings over their time apart: ``ts`` is this reading's.
    """
    by_status: dict[str, int] = {}
    by_version: dict[str, int] = {}
    routes: set[str] = set()
    buckets: dict[float, float] = {}
    count = total_seconds = 0.0
    with _scraped() as registry:
        families = [f for f in registry.collect() if f.name in _STATS_FAMILIES]
    # Requests first: they say which routes are inference routes for the histogram below.
    for family in sorted(families, key=lambda f: f.name != _REQUESTS_FAMILY):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != name:
                continue
            if sample.name == "modelserve_requests_total":
                if labels["protocol"] not in INFERENCE_PROTOCOLS:
                    continue
                routes.add(labels["route"])
                status, version = labels["status"], labels["version"]
                by_status[status] = by_status.get(status, 0) + int(sample.value)
                by_version[version] = by_version.get(version, 0) + int(sample.value)
            elif labels.get("route") in routes:
                if sample.name.endswith("_bucket"):
                    le = float(labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
                elif sample.name.endswith("_count"):
                    count += sample.value
                elif sample.name.endswith("_sum"):
                    total_seconds += sample.value
    cumulative = sorted(buckets.items())
    return {
        "model": name,
        "requests": sum(by_status.values()),
        "errors": sum(n for status, n in by_status.items() if int(status) >= 400),
        "by_status": dict(sorted(by_status.items())),
        "by_version": dict(sorted(by_version.items())),
        "latency": {
            "count": int(count),
            "mean_ms": _ms(total_seconds / count) if count else None,
            **{f"p{round(q * 100)}_ms": _ms(quantile(q, cumulative)) for q in QUANTILES},
            # Cumulative counts, as Prometheus keeps them; ``le: null`` is +Inf.
            "buckets": [
                {"le": le if math.isfinite(le) else None, "count": int(n)} for le, n in cumulative
            ],
        },
        "ts": time.time(),
    }


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """Estimate the ``q`` quantile from cumulative ``(upper bound, count)`` buckets, as
    Prometheus's ``histogram_quantile`` does: linearly within the bucket it falls in (the
    lowest bucket from 0; past the last finite bound, that bound). ``None`` with no data."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, n in cumulative:
        if n >= rank:
            if math.isinf(bound):
                return lower_bound
            if n == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (n - lower_count)
        lower_bound, lower_count = bound, n
    return lower_bound  # pragma: no cover - the +Inf bucket holds every observation


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
