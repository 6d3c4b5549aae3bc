"""The helpers the service calls to record the `journey_*` metrics, and their exposition.

The metrics themselves, their labels, buckets and multiprocess modes are declared in serving/metric_defs.py (the
table every dashboard and alert in `infra/` is written against); they are re-exported here so a caller needs one
import (`from serving import metrics`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from serving.metric_defs import (
    AB_ASSIGNMENTS as AB_ASSIGNMENTS,
)
from serving.metric_defs import (
    AB_CONVERSIONS as AB_CONVERSIONS,
)
from serving.metric_defs import (
    AB_ROUTE_WEIGHT as AB_ROUTE_WEIGHT,
)
from serving.metric_defs import (
    ALL_METRICS as ALL_METRICS,
)
from serving.metric_defs import (
    BATCH_BUCKETS as BATCH_BUCKETS,
)
from serving.metric_defs import (
    BATCH_SIZE as BATCH_SIZE,
)
from serving.metric_defs import (
    CLIENT_CLOSED as CLIENT_CLOSED,
)
from serving.metric_defs import (
    DEFAULT_REASONS as DEFAULT_REASONS,
)
from serving.metric_defs import (
    EVENT_PUSH as EVENT_PUSH,
)
from serving.metric_defs import (
    EVENT_STATUSES as EVENT_STATUSES,
)
from serving.metric_defs import (
    EVENTS as EVENTS,
)
from serving.metric_defs import (
    EXECUTION_PROVIDER as EXECUTION_PROVIDER,
)
from serving.metric_defs import (
    FEATURE_AGE as FEATURE_AGE,
)
from serving.metric_defs import (
    FEATURE_DEFAULTS as FEATURE_DEFAULTS,
)
from serving.metric_defs import (
    GPU_EXPECTED as GPU_EXPECTED,
)
from serving.metric_defs import (
    LATENCY_BUCKETS as LATENCY_BUCKETS,
)
from serving.metric_defs import (
    MODEL_INFERENCE as MODEL_INFERENCE,
)
from serving.metric_defs import (
    NO_VARIANT as NO_VARIANT,
)
from serving.metric_defs import (
    ONLINE_FEATURES as ONLINE_FEATURES,
)
from serving.metric_defs import (
    ONLINE_STORE_DEGRADED as ONLINE_STORE_DEGRADED,
)
from serving.metric_defs import (
    PREDICTION_SCORE as PREDICTION_SCORE,
)
from serving.metric_defs import (
    REQUEST_DURATION as REQUEST_DURATION,
)
from serving.metric_defs import (
    SCORE_BUCKETS as SCORE_BUCKETS,
)
from serving.metric_defs import (
    STEP_BUCKETS as STEP_BUCKETS,
)
from serving.metric_defs import (
    TRAINING_SCORE_MEAN as TRAINING_SCORE_MEAN,
)
from serving.metric_defs import (
    DefaultReason as DefaultReason,
)
from serving.metric_defs import (
    EventStatus as EventStatus,
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


def count_events(*, accepted: int = 0, rejected: int = 0, duplicates: int = 0) -> None:
    """Count one /events call's outcome: events stored, events refused, and retried events already stored."""
    if accepted:
        EVENTS.labels("accepted").inc(accepted)
    if rejected:
        EVENTS.labels("rejected").inc(rejected)
    if duplicates:
        EVENTS.labels("duplicate").inc(duplicates)


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
