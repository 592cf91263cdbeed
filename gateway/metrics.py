"""Prometheus instruments, their label caches, and the scrape.

Every app owns one ``Metrics`` with its own ``CollectorRegistry``, so several gateways in one
process (the tests) never share a counter. With ``PROMETHEUS_MULTIPROC_DIR`` set (workers > 1)
the values live in per-process mmap files in that directory instead, and a scrape answered by
any worker sums every worker's files.

Other plugins feed what only they know through ``runtime.metrics``: ``store_error()``,
``set_cooldown(deployment, seconds)`` and ``set_quota_usage(team, limit, ratio)``. The worker
supervisor calls ``worker_exited(pid)`` when a worker dies.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.metrics_core import Metric

from gateway.periodic import every

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: How often recorded values reach prometheus_client (and, with workers, the shared files) besides
#: before each scrape: what another worker's scrape can lag behind at most.
FLUSH_S = 0.25
COOLDOWN = "gateway_deployment_cooldown"

#: Time to first byte: a gateway error answers in milliseconds, a long prompt on a busy
#: deployment can take a minute; the top bucket is the default first-byte timeout.
TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
#: Whole requests: streams of long answers run for minutes.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: (team, model, deployment, inbound dialect, status): the label set a request records into.
RequestKey = tuple[str, str, str, str, int]
#: (team, model, deployment, estimated): the label set of a request's tokens.
TokenKey = tuple[str, str, str, bool]

# ``*_created`` series would double every counter's output, and nothing here reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class _Pending:
    """A histogram child's observations not yet handed to it: a count per bucket and their sum."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Histogram, bounds: tuple[float, ...]) -> None:
        self.child = child
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # Histogram.observe's bucket: the first upper bound >= value.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush(self) -> None:
        if not any(self.counts):
            return
        # prometheus_client keeps a histogram as one value per bucket (not cumulative) plus the
        # sum; adding to them is what ``observe`` does, once per observation.
        buckets = self.child._buckets
        for index, count in enumerate(self.counts):
            if count:
                buckets[index].inc(count)
                self.counts[index] = 0
        self.child._sum.inc(self.total)
        self.total = 0.0


class RequestSeries:
    """The labelled children one (team, model, deployment, dialect, status) records into, and
    what was recorded since the last flush."""

    __slots__ = ("count", "duration", "requests", "ttfb")

    def __init__(self, requests: Counter, duration: _Pending, ttfb: _Pending | None) -> None:
        self.requests = requests
        self.count = 0
        self.duration = duration
        self.ttfb = ttfb

    def flush(self) -> None:
        if self.count:
            self.requests.inc(self.count)
            self.count = 0
        self.duration.flush()
        if self.ttfb is not None:
            self.ttfb.flush()


class Metrics:
    """The gateway's instruments. Label values must be bounded: configured names, codes, or ``""``."""

    def __init__(self) -> None:
        # prometheus_client itself reads the variable, so it, not an argument, decides the mode.
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        if self.multiprocess_dir:
            _use_multiprocess_values(self.multiprocess_dir)
        # In multiprocess mode the files are the source; registering too would count this process twice.
        registry = None if self.multiprocess_dir else CollectorRegistry()
        self.requests = Counter(
            "gateway_requests_total",
            "Requests answered, by team, model asked for, deployment, inbound dialect and HTTP status.",
            ("team", "model", "deployment", "dialect", "status"),
            registry=registry,
        )
        self.tokens = Counter(
            "gateway_tokens_total",
            "Tokens used, by kind (prompt|completion) and source (reported by the upstream|estimated).",
            ("team", "model", "deployment", "kind", "source"),
            registry=registry,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited_total",
            "Requests refused with 429 by the gateway's own limits, by team and the limit hit.",
            ("team", "limit"),
            registry=registry,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from the request's arrival to the last byte of the answer.",
            ("model", "deployment"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.ttfb = Histogram(
            "gateway_time_to_first_byte_seconds",
            "Time from the request's arrival to the first byte of an upstream's successful answer.",
            ("model", "deployment"),
            buckets=TTFB_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total",
            "Failed upstream attempts: connect, timeout, status_<code>, or idle_timeout|broken mid-stream.",
            ("deployment", "reason"),
            registry=registry,
        )
        # Cooldowns and quota use are facts of the shared store, so the freshest observation from
        # any worker is the truth (mostrecent), and a dead worker's last one is still true.
        self.cooldown = Gauge(
            COOLDOWN,
            "Seconds until the deployment leaves cooldown; 0 when it is available.",
            ("deployment",),
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.quota_usage = Gauge(
            "gateway_quota_usage_ratio",
            "Share of a team's limit in use at its last admission (1 = spent).",
            ("team", "limit"),
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        # Requests in flight end with their worker: a dead worker's count must not linger.
        self.in_flight = Gauge(
            "gateway_in_flight_requests",
            "Inference requests being handled now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.store_errors = Counter(
            "gateway_store_errors_total",
            "Quota store calls that failed or timed out.",
            registry=registry,
        )
        source: CollectorRegistry | multiprocess.MultiProcessCollector
        if registry is not None:
            source = registry
        else:
            source = multiprocess.MultiProcessCollector(None, self.multiprocess_dir)  # type: ignore[no-untyped-call]
        self._scraped = CollectorRegistry(auto_describe=False)
        self._scraped.register(_Scrape(source))
        self._series: dict[RequestKey, RequestSeries] = {}
        self._tokens: dict[TokenKey, _TokenSeries] = {}
        self._upstream: dict[tuple[str, str], Counter] = {}
        self._limited: dict[tuple[str, str], Counter] = {}
        self._quota: dict[tuple[str, str], Gauge] = {}
        #: The latest ratio per (team, limit) since the last flush.
        self._quota_pending: dict[tuple[str, str], float] = {}
        #: Requests being handled now, and what the gauge was last given.
        self.requests_in_flight = 0
        self._in_flight_flushed = 0

    # -- per request ----------------------------------------------------------------------------
    # Requests, their latencies and tokens are added up here in plain Python and handed to
    # prometheus_client by ``flush``: before every scrape, and every ``FLUSH_S`` for the other
    # workers' scrapes. Its own per-observation path (a lock and several calls per value) was
    # a sixth of the gateway's instructions per request.

    def request(self, key: RequestKey, duration_s: float, ttfb_s: float | None) -> None:
        series = self._series.get(key)
        if series is None:
            team, model, deployment, dialect, status = key
            series = self._series[key] = RequestSeries(
                self.requests.labels(team, model, deployment, dialect, str(status)),
                _Pending(self.duration.labels(model, deployment), DURATION_BUCKETS),
                # Only an upstream's answer has a first byte: no empty histograms for refusals.
                _Pending(self.ttfb.labels(model, deployment), TTFB_BUCKETS) if deployment else None,
            )
        series.count += 1
        series.duration.observe(duration_s)
        if ttfb_s is not None and series.ttfb is not None:  # also for a 499 after bytes flowed
            series.ttfb.observe(ttfb_s)

    def count_tokens(self, key: TokenKey, prompt: int, completion: int) -> None:
        tokens = self._tokens.get(key)
        if tokens is None:
            team, model, deployment, estimated = key
            source = "estimated" if estimated else "reported"
            tokens = self._tokens[key] = _TokenSeries(
                self.tokens.labels(team, model, deployment, "prompt", source),
                self.tokens.labels(team, model, deployment, "completion", source),
            )
        if prompt > 0:
            tokens.prompt += prompt
        if completion > 0:
            tokens.completion += completion

    def flush(self) -> None:
        """Hand what was recorded since the last flush to prometheus_client. Runs on the event
        loop's thread, like the recording: nothing can be added halfway through."""
        if self.requests_in_flight != self._in_flight_flushed:
            self._in_flight_flushed = self.requests_in_flight
            self.in_flight.set(self.requests_in_flight)
        for series in self._series.values():
            series.flush()
        for tokens in self._tokens.values():
            tokens.flush()
        if self._quota_pending:
            pending, self._quota_pending = self._quota_pending, {}
            for key, ratio in pending.items():
                child = self._quota.get(key)
                if child is None:
                    child = self._quota[key] = self.quota_usage.labels(*key)
                child.set(ratio)

    def upstream_error(self, deployment: str, reason: str) -> None:
        key = (deployment, reason)
        child = self._upstream.get(key)
        if child is None:
            child = self._upstream[key] = self.upstream_errors.labels(deployment, reason)
        child.inc()

    def rate_limit_hit(self, team: str, limit: str) -> None:
        key = (team, limit)
        child = self._limited.get(key)
        if child is None:
            child = self._limited[key] = self.rate_limited.labels(team, limit)
        child.inc()

    # -- fed by other plugins -------------------------------------------------------------------

    def store_error(self, error: BaseException | None = None) -> None:
        """One failed store call. Takes the error so it can be a store's error listener as is."""
        self.store_errors.inc()

    def set_cooldown(self, deployment: str, seconds: float) -> None:
        """``deployment`` cools for ``seconds`` from now; 0 ends it. Kept as a deadline, so the
        scraped value counts down by itself and never needs clearing."""
        self.cooldown.labels(deployment).set(time.time() + seconds if seconds > 0 else 0.0)

    def set_quota_usage(self, team: str, limit: str, ratio: float) -> None:
        """The share (0..1) of ``team``'s ``limit`` (``rpm``, ``tpm``, …) in use. Set on every
        admission, so only the latest per flush reaches the gauge."""
        self._quota_pending[team, limit] = ratio

    # -- the scrape -----------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format: this app's values, or every worker's in multiprocess mode. In
        multiprocess mode the caller flushes first, on the loop's thread (this reads files)."""
        if not self.multiprocess_dir:
            self.flush()
        return generate_latest(self._scraped)


class _TokenSeries:
    """A (team, model, deployment, source)'s prompt and completion counters, and the tokens
    counted since the last flush."""

    __slots__ = ("completion", "completion_counter", "prompt", "prompt_counter")

    def __init__(self, prompt_counter: Counter, completion_counter: Counter) -> None:
        self.prompt_counter = prompt_counter
        self.completion_counter = completion_counter
        self.prompt = 0
        self.completion = 0

    def flush(self) -> None:
        if self.prompt:
            self.prompt_counter.inc(self.prompt)
            self.prompt = 0
        if self.completion:
            self.completion_counter.inc(self.completion)
            self.completion = 0


class _Scrape:
    """What a scrape sees: the instruments (or every worker's files), with cooldown deadlines
    turned into the seconds left at the moment of the scrape."""

    def __init__(self, source: CollectorRegistry | multiprocess.MultiProcessCollector) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        for family in self._source.collect():
            if family.name == COOLDOWN:
                family.samples = [s._replace(value=max(0.0, s.value - now)) for s in family.samples]
            yield family


@functools.cache
def status_reason(status: int) -> str:
    """``gateway_upstream_errors_total``'s reason for an error status: bounded by HTTP itself."""
    return f"status_{status}"


def _use_multiprocess_values(directory: str) -> None:
    if not os.path.isdir(directory):
        raise RuntimeError(f"{MULTIPROC_ENV}={directory} is not a directory")
    # prometheus_client picks its value class when first imported; a supervisor that imported it
    # before setting the variable would otherwise leave its forked workers counting in memory.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def worker_exited(pid: int, directory: str | None = None) -> None:
    """The supervisor calls this when a worker dies, so its in-flight count stops being summed.
    Its counters stay: totals must never go backwards. ``directory`` defaults to the variable."""
    directory = directory or os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def flushing(metrics: Metrics, interval_s: float = FLUSH_S) -> AsyncIterator[None]:
    """Flush ``metrics`` every ``interval_s`` while the app runs, and once more at shutdown, so a
    worker's last requests are in its files when it exits."""
    try:
        async with every(interval_s, metrics.flush):
            yield
    finally:
        metrics.flush()
