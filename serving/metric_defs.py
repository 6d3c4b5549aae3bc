"""Every `journey_*` Prometheus metric, declared once (serving.metrics holds the helpers that record them).

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
    journey_events_total                counter    status (accepted | rejected | duplicate)   count_events
    journey_event_push_seconds          histogram  -                              time_event_push

Grafana dashboards and alert rules in `infra/` use exactly these names (DESIGN.md, Metrics); the request count is
`journey_request_duration_seconds_count`. Three families exist for alerts that compare two things:

- `journey_gpu_expected` is 1 for a loaded (model, version) when the provider policy placed it on CUDA
  (serving/runtime/providers.py: `cuda`, or `auto` with batches at the measured crossover; never a tree ensemble); with
  `journey_execution_provider{provider="CPUExecutionProvider"}` it tells "a GPU was expected but ONNX Runtime runs the
  model on the CPU" (missing CUDA/cuDNN libraries, a driver mismatch, no GPU on the node).
- `journey_training_score_mean` is the mean score a version gave on its training data, the drift reference for the
  mean of `journey_prediction_score` (serving/loaded.py says where it comes from).
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
This module must be imported after PROMETHEUS_MULTIPROC_DIR is set (true for BentoML workers);
`serving.metrics.multiprocess_active()` tells whether it was.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

from prometheus_client import Counter, Gauge, Histogram

DefaultReason: TypeAlias = Literal["missing_entity", "missing_value", "store_down"]
EventStatus: TypeAlias = Literal["accepted", "rejected", "duplicate"]
DEFAULT_REASONS: Final[tuple[DefaultReason, ...]] = ("missing_entity", "missing_value", "store_down")
EVENT_STATUSES: Final[tuple[EventStatus, ...]] = ("accepted", "rejected", "duplicate")
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
    "Events received at /events, by outcome (accepted and pushed, rejected by validation, or a duplicate of an event "
    "stored before).",
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
