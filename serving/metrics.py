"""Every `journey_*` Prometheus metric, declared once, with the helpers the service calls to record them.

    metric                              type       labels                         recorded by
    journey_request_duration_seconds    histogram  endpoint, variant, status      time_request / observe_request
    journey_model_inference_seconds     histogram  model, version, provider       time_inference
    journey_batch_size                  histogram  model                          observe_batch_size
    journey_online_features_seconds     histogram  service                        time_online_features
    journey_feature_age_seconds         gauge      view                           record_feature_ages
    journey_feature_defaults_total      counter    service, reason                count_feature_defaults
    journey_prediction_score            histogram  model, version                 record_scores
    journey_ab_assignments_total        counter    endpoint, experiment, variant  count_assignment
    journey_ab_route_weight             gauge      endpoint, variant              set_route_weights
    journey_ab_conversions_total        counter    endpoint, variant              count_conversions
    journey_online_store_degraded       gauge      -                              set_online_store_degraded
    journey_execution_provider          gauge      model, version, provider       set_execution_provider
    journey_gpu_expected                gauge      model, version                 set_gpu_expected
    journey_training_score_mean         gauge      model, version                 set_training_score_mean
    journey_events_total                counter    status (accepted | rejected)   count_events
    journey_event_push_seconds          histogram  -                              time_event_push

Grafana dashboards and alert rules in `infra/` use exactly these names (DESIGN.md, Metrics); the request count is
`journey_request_duration_seconds_count`. Three families exist for alerts that compare two things:

- `journey_gpu_expected` is 1 for a loaded (model, version) when the provider policy placed it on CUDA
  (serving/runtime/providers.py: `cuda`, or `auto` with batches at the measured crossover; never a tree ensemble); with
  `journey_execution_provider{provider="CPUExecutionProvider"}` it tells "a GPU was expected but ONNX Runtime runs the
  model on the CPU" (missing CUDA/cuDNN libraries, a driver mismatch, no GPU on the node).
- `journey_training_score_mean` is the mean score a version gave on its training data, the drift reference for the
  mean of `journey_prediction_score` (serving/state.py says where it comes from).
- `journey_ab_route_weight` (each variant's configured weight) is what a sample ratio mismatch is measured against;
  it and `journey_ab_conversions_total` (purchases attributed to a variant) are recorded by the A/B router.

Labels stay bounded: endpoint, variant, model, version, service and view names come from configuration (routes,
the registry, feature services), never from a request; `status` is an HTTP status code and `reason` one of
`DefaultReason`. Never pass a user id, an item id or an error message as a label value: each distinct value is a
new time series in every worker and in Prometheus.

Multiprocess (BentoML, workers > 1): metrics are plain `prometheus_client` objects. `bentoml.metrics` is only a
deprecated alias for `prometheus_client` in BentoML 1.4 (it warns on every attribute access). BentoML starts each
worker with PROMETHEUS_MULTIPROC_DIR in its environment, so when the service module imports this one, values go to
that directory's mmap files, and BentoML's `/metrics` merges them with a `MultiProcessCollector`: counters and
histograms add up over workers. A gauge must say how its workers' values combine (`multiprocess_mode`):

    journey_feature_age_seconds     mostrecent  the age seen by the latest request of any worker; a dead or idle
                                                worker's older value is superseded, it never holds the gauge up
    journey_online_store_degraded   mostrecent  the latest observation wins (set on every online read, up or down),
                                                so a worker that saw the store down once cannot pin it at 1
    journey_execution_provider      livemax     1 if any live worker serves (model, version) on that provider;
                                                a worker sets 0 when it unloads the version
    journey_gpu_expected            livemax     every worker of a host computes the same value at load
    journey_training_score_mean     livemax     likewise, from the registered version
    journey_ab_route_weight         mostrecent  the route a worker loaded last (routes reload without a restart)

The `live*` modes drop a worker's values when `prometheus_client.multiprocess.mark_process_dead(pid)` runs for it;
without that call `livemax` behaves as `max` until the server restarts (BentoML empties the directory on start).
This module must be imported after PROMETHEUS_MULTIPROC_DIR is set (true for BentoML workers); `multiprocess_active()`
tells whether it was.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

DefaultReason: TypeAlias = Literal["missing_entity", "missing_value", "store_down"]
EventStatus: TypeAlias = Literal["accepted", "rejected"]
DEFAULT_REASONS: Final[tuple[DefaultReason, ...]] = ("missing_entity", "missing_value", "store_down")
EVENT_STATUSES: Final[tuple[EventStatus, ...]] = ("accepted", "rejected")
CLIENT_CLOSED: Final = 499  # status of a request cancelled before it answered (nginx's convention)
NO_VARIANT: Final = "none"  # the variant label of requests that no A/B route applies to (or that failed before it)

# Whole requests: from sub-millisecond (a cached answer) to the 5 s a client would have given up by.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# In-process steps (one ONNX call: ~15 µs at batch 1 on CPU; one online read: ~0.4 ms) need finer low buckets.
STEP_BUCKETS: Final = (0.0001, 0.00025, *LATENCY_BUCKETS)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
SCORE_BUCKETS: Final = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 ... 1.0: probabilities, for drift

REQUEST_DURATION: Final = Histogram(
    "journey_request_duration_seconds",
    "End-to-end request latency per endpoint, A/B variant and HTTP status; _count is the request count.",
    ("endpoint", "variant", "status"),
    buckets=LATENCY_BUCKETS,
)
MODEL_INFERENCE: Final = Histogram(
    "journey_model_inference_seconds",
    "ONNX Runtime latency of one model call (one batch) per model, version and execution provider.",
    ("model", "version", "provider"),
    buckets=STEP_BUCKETS,
)
BATCH_SIZE: Final = Histogram(
    "journey_batch_size",
    "Rows per model call (after adaptive batching).",
    ("model",),
    buckets=BATCH_BUCKETS,
)
ONLINE_FEATURES: Final = Histogram(
    "journey_online_features_seconds",
    "Latency of one online feature read per feature service.",
    ("service",),
    buckets=STEP_BUCKETS,
)
FEATURE_AGE: Final = Gauge(
    "journey_feature_age_seconds",
    "Age of the oldest feature row served by the latest request, per feature view (now - its event timestamp).",
    ("view",),
    multiprocess_mode="mostrecent",
)
FEATURE_DEFAULTS: Final = Counter(
    "journey_feature_defaults_total",
    "Feature values served from training-time defaults, per feature service and reason.",
    ("service", "reason"),
)
PREDICTION_SCORE: Final = Histogram(
    "journey_prediction_score",
    "Distribution of served scores (probabilities) per model version, for drift monitoring.",
    ("model", "version"),
    buckets=SCORE_BUCKETS,
)
AB_ASSIGNMENTS: Final = Counter(
    "journey_ab_assignments_total",
    "Requests routed to each A/B variant per endpoint and experiment (empty: a route without an experiment name).",
    ("endpoint", "experiment", "variant"),
)
AB_ROUTE_WEIGHT: Final = Gauge(
    "journey_ab_route_weight",
    "Configured traffic weight of each A/B variant per endpoint (the expected share of assignments).",
    ("endpoint", "variant"),
    multiprocess_mode="mostrecent",
)
AB_CONVERSIONS: Final = Counter(
    "journey_ab_conversions_total",
    "Purchases attributed to the A/B variant that answered the buyer's earlier prediction, per endpoint.",
    ("endpoint", "variant"),
)
ONLINE_STORE_DEGRADED: Final = Gauge(
    "journey_online_store_degraded",
    "1 while the online store is unreachable and answers come from defaults, else 0.",
    multiprocess_mode="mostrecent",
)
EXECUTION_PROVIDER: Final = Gauge(
    "journey_execution_provider",
    "1 for the ONNX Runtime execution provider each loaded model version runs on (info-style).",
    ("model", "version", "provider"),
    multiprocess_mode="livemax",
)
GPU_EXPECTED: Final = Gauge(
    "journey_gpu_expected",
    "1 when (model, version) should run on a GPU: the host exposes an NVIDIA device and the graph has CUDA kernels.",
    ("model", "version"),
    multiprocess_mode="livemax",
)
TRAINING_SCORE_MEAN: Final = Gauge(
    "journey_training_score_mean",
    "Mean score of the model version on its training data: the reference of journey_prediction_score for drift.",
    ("model", "version"),
    multiprocess_mode="livemax",
)
EVENTS: Final = Counter(
    "journey_events_total",
    "Events received at /events, by outcome (accepted and pushed, or rejected by validation).",
    ("status",),
)
EVENT_PUSH: Final = Histogram(
    "journey_event_push_seconds",
    "Latency of pushing one /events batch into the Feast push source.",
    buckets=LATENCY_BUCKETS,
)

ALL_METRICS: Final = (
    REQUEST_DURATION,
    MODEL_INFERENCE,
    BATCH_SIZE,
    ONLINE_FEATURES,
    FEATURE_AGE,
    FEATURE_DEFAULTS,
    PREDICTION_SCORE,
    AB_ASSIGNMENTS,
    AB_ROUTE_WEIGHT,
    AB_CONVERSIONS,
    ONLINE_STORE_DEGRADED,
    EXECUTION_PROVIDER,
    GPU_EXPECTED,
    TRAINING_SCORE_MEAN,
    EVENTS,
    EVENT_PUSH,
)


@dataclass
class RequestTimer:
    """What `time_request` records when the block ends; set `variant` once routed and `status` if not 200."""

    endpoint: str
    variant: str = NO_VARIANT
    status: int = 200


@contextlib.contextmanager
def time_request(endpoint: str, variant: str = NO_VARIANT) -> Iterator[RequestTimer]:
    """Time a request; an exception leaving the block is recorded with its `http_status` (else 500) and re-raised.

    Journey's errors (and `serving.runtime.InputError`) carry `http_status`, so a 422 is recorded as 422 even when
    the HTTP layer converts the exception later; a cancellation is recorded as 499.

    Example:
        with time_request("predict_purchase") as request:
            request.variant = route.variant
            ...
    """
    timer = RequestTimer(endpoint, variant)
    started = time.perf_counter()
    try:
        yield timer
    except Exception as exc:
        status = getattr(exc, "http_status", 500)
        timer.status = status if isinstance(status, int) else 500
        raise
    except BaseException:  # cancelled (the client went away) or shutting down: not an answer the client saw
        timer.status = CLIENT_CLOSED
        raise
    finally:
        observe_request(timer.endpoint, timer.variant, timer.status, time.perf_counter() - started)


def observe_request(endpoint: str, variant: str, status: int, seconds: float) -> None:
    """Record one finished request (for callers that time it themselves, e.g. a middleware)."""
    REQUEST_DURATION.labels(endpoint, variant, str(int(status))).observe(seconds)


@contextlib.contextmanager
def time_inference(model: str, version: str, provider: str) -> Iterator[None]:
    """Time one model call; a failed call is timed too (its time was spent)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        MODEL_INFERENCE.labels(model, version, provider).observe(time.perf_counter() - started)


def observe_batch_size(model: str, rows: int) -> None:
    BATCH_SIZE.labels(model).observe(rows)


@contextlib.contextmanager
def time_online_features(service: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        ONLINE_FEATURES.labels(service).observe(time.perf_counter() - started)


def record_feature_ages(
    stamps: Mapping[str, Sequence[datetime | None]], *, now: datetime | None = None
) -> dict[str, float]:
    """Set each view's age gauge to now - its oldest served event timestamp; return those ages (seconds).

    `stamps` is what `OnlineFeatureReader.read_with_timestamps` returns: per view, one timestamp per row, None for an
    entity the store does not know (counted by `count_feature_defaults`, not an age). The oldest row is the one a
    freshness alert is about. Naive datetimes are taken as UTC; an event "in the future" (clock skew) counts as 0.
    Views with no known row leave their gauge untouched.
    """
    current = (now or datetime.now(UTC)).timestamp()
    ages: dict[str, float] = {}
    for view, times in stamps.items():
        known = [t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in times if t is not None]
        if known:
            ages[view] = max(0.0, current - min(known).timestamp())
            FEATURE_AGE.labels(view).set(ages[view])
    return ages


def count_feature_defaults(service: str, reason: DefaultReason, values: int = 1) -> None:
    """Count feature values served from training-time defaults instead of the online store."""
    if values:
        FEATURE_DEFAULTS.labels(service, reason).inc(values)


def record_scores(model: str, version: str, scores: np.ndarray | Sequence[float]) -> None:
    """Add every finite score of a batch to the score histogram (NaN/inf would poison `_sum`; they are skipped).

    Pass the score that is monitored for drift: the positive-class probability of a binary model, the top
    probability of a multi-class one. A batch goes in with one update per bucket instead of one `observe` per row
    (~3 µs each in multiprocess mode), see `_observe_many`.
    """
    flat = np.asarray(scores, dtype=np.float64).ravel()
    _observe_many(PREDICTION_SCORE.labels(model, version), flat[np.isfinite(flat)])


def count_assignment(endpoint: str, variant: str, experiment: str | None = None) -> None:
    AB_ASSIGNMENTS.labels(endpoint, experiment or "", variant).inc()


def set_route_weights(endpoint: str, weights: Mapping[str, float]) -> None:
    """Publish an endpoint's route: each variant's weight (any scale; alerts use the shares)."""
    for variant, weight in weights.items():
        AB_ROUTE_WEIGHT.labels(endpoint, variant).set(weight)


def count_conversions(endpoint: str, variant: str, purchases: int = 1) -> None:
    """Count purchases attributed to the variant that answered the buyer's earlier prediction."""
    if purchases:
        AB_CONVERSIONS.labels(endpoint, variant).inc(purchases)


def set_online_store_degraded(degraded: bool) -> None:
    """Call on every online read (True when it failed): `mostrecent` needs fresh writes to reflect recovery."""
    ONLINE_STORE_DEGRADED.set(1 if degraded else 0)


def set_execution_provider(model: str, version: str, provider: str) -> None:
    """Mark (model, version) as loaded on `provider` (the provider ONNX Runtime really uses)."""
    EXECUTION_PROVIDER.labels(model, version, provider).set(1)


def clear_execution_provider(model: str, version: str, provider: str) -> None:
    """Mark (model, version) as no longer served by this worker on `provider` (unload or reload)."""
    EXECUTION_PROVIDER.labels(model, version, provider).set(0)


def set_gpu_expected(model: str, version: str, expected: bool) -> None:
    """Say whether (model, version) should run on a GPU here (see the module docstring)."""
    GPU_EXPECTED.labels(model, version).set(1 if expected else 0)


def set_training_score_mean(model: str, version: str, mean: float) -> None:
    """Publish the drift reference of (model, version): its mean score on its training data."""
    TRAINING_SCORE_MEAN.labels(model, version).set(mean)


def count_events(*, accepted: int = 0, rejected: int = 0) -> None:
    """Count one /events call's outcome: events validated and pushed, and events refused."""
    if accepted:
        EVENTS.labels("accepted").inc(accepted)
    if rejected:
        EVENTS.labels("rejected").inc(rejected)


@contextlib.contextmanager
def time_event_push() -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        EVENT_PUSH.observe(time.perf_counter() - started)


def prime_series(
    *, services: Iterable[str] = (), routes: Iterable[tuple[str, str]] = (), experiment: str | None = None
) -> None:
    """Create the zero-valued series that alerts and dashboards expect before the first event happens.

    A counter series that does not exist yet makes `rate()`/`increase()` return nothing rather than 0, so an alert on
    "defaults served" or a dashboard of A/B assignments would be blind until the first occurrence. `routes` are
    (endpoint, variant) pairs from the route configuration, of `experiment` when it has one. Feature-age gauges are
    not primed: 0 would claim fresh features.
    """
    for service in services:
        for reason in DEFAULT_REASONS:
            FEATURE_DEFAULTS.labels(service, reason)
    for endpoint, variant in routes:
        AB_ASSIGNMENTS.labels(endpoint, experiment or "", variant)
        AB_CONVERSIONS.labels(endpoint, variant)
    for status in EVENT_STATUSES:
        EVENTS.labels(status)


def multiprocess_active() -> bool:
    """Whether values go to PROMETHEUS_MULTIPROC_DIR (decided when prometheus_client was first imported).

    False while the variable is set means this process imported prometheus_client too early: its metrics would be
    missing from BentoML's merged `/metrics`. The service logs this at startup.
    """
    return values.ValueClass is not values.MutexValue


def exposition() -> bytes:
    """The text format of every metric of this process, merged over workers when multiprocess mode is on.

    BentoML serves `/metrics` itself; this is for tests and for a process that exposes metrics on its own.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and multiprocess_active():
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def _observe_many(child: Any, observations: np.ndarray) -> None:
    """`child.observe(v)` for every v, as one increment per non-empty bucket plus one of the sum.

    Uses the histogram's bucket values (`_upper_bounds`, `_buckets`, `_sum`: prometheus_client internals, stable
    since 0.4); a unit test checks the result equals per-value `observe`, and if they are ever absent this falls back
    to the loop.
    """
    if not observations.size:
        return
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in observations.tolist():
            child.observe(value)
        return
    # observe() puts v in the first bucket with v <= bound: searchsorted(side="left") finds exactly that index
    index = np.searchsorted(np.asarray(bounds, dtype=np.float64), observations, side="left")
    counts = np.bincount(index, minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(observations.sum()))
