"""Every `journey_*` metric is exposed with its labels, the helpers record what they say, and workers merge right.

In-process tests read this process's default registry (labels unique per test, so tests do not see each other's
values); the multiprocess test runs real worker processes against a temporary PROMETHEUS_MULTIPROC_DIR, as BentoML
does with workers > 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving import metrics as m
from serving.runtime import InputError

REPO_ROOT = Path(__file__).resolve().parents[3]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: bytes | str) -> Samples:
    body = text.decode() if isinstance(text, bytes) else text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_every_design_metric_is_exposed_with_its_labels() -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with m.time_request("expose_ep", "a"):
        pass
    with m.time_inference("expose_model", "3", "CPUExecutionProvider"):
        pass
    m.observe_batch_size("expose_model", 5)
    with m.time_online_features("expose_service"):
        pass
    m.record_feature_ages({"expose_view": [now - timedelta(seconds=30)]}, now=now)
    m.count_feature_defaults("expose_service", "missing_entity", 3)
    m.record_scores("expose_model", "3", np.array([0.2, 0.7]))
    m.count_assignment("expose_ep", "a")
    m.set_online_store_degraded(False)
    m.set_execution_provider("expose_model", "3", "CPUExecutionProvider")
    m.count_events(accepted=2, rejected=1)
    with m.time_event_push():
        pass

    exposed = _samples(m.exposition())

    expected = {
        "journey_request_duration_seconds_count": {"endpoint": "expose_ep", "variant": "a", "status": "200"},
        "journey_model_inference_seconds_count": {
            "model": "expose_model",
            "version": "3",
            "provider": "CPUExecutionProvider",
        },
        "journey_batch_size_sum": {"model": "expose_model"},
        "journey_online_features_seconds_count": {"service": "expose_service"},
        "journey_feature_age_seconds": {"view": "expose_view"},
        "journey_feature_defaults_total": {"service": "expose_service", "reason": "missing_entity"},
        "journey_prediction_score_count": {"model": "expose_model", "version": "3"},
        "journey_ab_assignments_total": {"endpoint": "expose_ep", "experiment": "", "variant": "a"},
        "journey_online_store_degraded": {},
        "journey_execution_provider": {"model": "expose_model", "version": "3", "provider": "CPUExecutionProvider"},
        "journey_events_total": {"status": "accepted"},
        "journey_event_push_seconds_count": {},
    }
    for name, labels in expected.items():
        assert (name, tuple(sorted(labels.items()))) in exposed, name
    assert exposed[("journey_feature_age_seconds", (("view", "expose_view"),))] == 30.0
    assert exposed[("journey_batch_size_sum", (("model", "expose_model"),))] == 5.0
    assert exposed[("journey_prediction_score_count", (("model", "expose_model"), ("version", "3")))] == 2.0
    declared = {family.name for metric in m.ALL_METRICS for family in metric.describe()}  # counters: no _total
    assert declared == {
        "journey_request_duration_seconds",
        "journey_model_inference_seconds",
        "journey_batch_size",
        "journey_online_features_seconds",
        "journey_feature_age_seconds",
        "journey_feature_defaults",
        "journey_prediction_score",
        "journey_ab_assignments",
        "journey_ab_route_weight",
        "journey_ab_conversions",
        "journey_online_store_degraded",
        "journey_execution_provider",
        "journey_gpu_expected",
        "journey_training_score_mean",
        "journey_events",
        "journey_event_push_seconds",
    }


def test_request_count_is_the_latency_histogram_count_per_status() -> None:
    m.observe_request("count_ep", "b", 200, 0.002)
    m.observe_request("count_ep", "b", 200, 0.004)
    m.observe_request("count_ep", "b", 503, 0.1)

    labels = {"endpoint": "count_ep", "variant": "b"}
    assert _value("journey_request_duration_seconds_count", **labels, status="200") == 2
    assert _value("journey_request_duration_seconds_count", **labels, status="503") == 1
    assert _value("journey_request_duration_seconds_bucket", **labels, status="200", le="0.005") == 2


def test_time_request_records_the_variant_set_inside_the_block() -> None:
    with m.time_request("routed_ep") as request:
        request.variant = "candidate"

    assert _value("journey_request_duration_seconds_count", endpoint="routed_ep", variant="candidate", status="200")


def test_time_request_records_an_error_with_its_http_status_and_reraises() -> None:
    with pytest.raises(InputError), m.time_request("error_ep", "a"):
        raise InputError("bad", field="features")
    with pytest.raises(RuntimeError), m.time_request("error_ep", "a"):
        raise RuntimeError("boom")

    assert _value("journey_request_duration_seconds_count", endpoint="error_ep", variant="a", status="422") == 1
    assert _value("journey_request_duration_seconds_count", endpoint="error_ep", variant="a", status="500") == 1


def test_time_inference_times_a_failed_call_too() -> None:
    with pytest.raises(ValueError), m.time_inference("failing_model", "1", "CPUExecutionProvider"):
        raise ValueError("bad batch")

    labels = {"model": "failing_model", "version": "1", "provider": "CPUExecutionProvider"}
    assert _value("journey_model_inference_seconds_count", **labels) == 1


def test_record_scores_equals_observing_each_score_and_skips_nan() -> None:
    scores = np.array([0.0, 0.05, 0.0500001, 0.5, 0.97, 1.0, np.nan, np.inf, 0.33])
    reference = CollectorRegistry()
    one_by_one = Histogram(
        "journey_prediction_score", "ref", ("model", "version"), buckets=m.SCORE_BUCKETS, registry=reference
    )
    for score in scores[np.isfinite(scores)]:
        one_by_one.labels("scores_model", "7").observe(float(score))

    m.record_scores("scores_model", "7", scores)

    want = {k: v for k, v in _samples(generate_latest(reference)).items() if "_created" not in k[0]}
    got = _samples(generate_latest(REGISTRY))
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert _value("journey_prediction_score_count", model="scores_model", version="7") == 7


def test_feature_age_is_the_oldest_served_row_per_view() -> None:
    now = datetime(2026, 11, 2, 12, tzinfo=UTC)
    stamps: dict[str, list[datetime | None]] = {
        "age_user": [now - timedelta(seconds=10), None, now - timedelta(seconds=70)],
        "age_naive": [(now - timedelta(seconds=5)).replace(tzinfo=None)],  # naive = UTC
        "age_future": [now + timedelta(seconds=3)],  # clock skew: not a negative age
        "age_unknown": [None, None],
    }

    ages = m.record_feature_ages(stamps, now=now)

    assert ages == {"age_user": 70.0, "age_naive": 5.0, "age_future": 0.0}
    assert _value("journey_feature_age_seconds", view="age_user") == 70.0
    assert _value("journey_feature_age_seconds", view="age_unknown") is None  # no row, no claim of freshness


def test_feature_defaults_are_counted_per_service_and_reason() -> None:
    m.count_feature_defaults("defaults_svc", "store_down", 33)
    m.count_feature_defaults("defaults_svc", "missing_entity")
    m.count_feature_defaults("defaults_svc", "missing_value", 0)

    assert _value("journey_feature_defaults_total", service="defaults_svc", reason="store_down") == 33
    assert _value("journey_feature_defaults_total", service="defaults_svc", reason="missing_entity") == 1
    assert _value("journey_feature_defaults_total", service="defaults_svc", reason="missing_value") is None


def test_degraded_gauge_follows_the_latest_online_read() -> None:
    m.set_online_store_degraded(True)
    assert _value("journey_online_store_degraded") == 1
    m.set_online_store_degraded(False)
    assert _value("journey_online_store_degraded") == 0


def test_execution_provider_is_one_while_loaded_and_zero_once_cleared() -> None:
    labels = {"model": "provider_model", "version": "2", "provider": "CUDAExecutionProvider"}
    m.set_execution_provider(**labels)
    assert _value("journey_execution_provider", **labels) == 1
    m.clear_execution_provider(**labels)
    assert _value("journey_execution_provider", **labels) == 0


def test_assignments_events_and_event_push_are_counted() -> None:
    before = _value("journey_events_total", status="rejected") or 0.0
    m.count_assignment("ab_ep", "control", "price-v3")
    m.count_assignment("ab_ep", "control", "price-v3")
    m.count_events(rejected=4)
    with m.time_event_push():
        pass

    assert _value("journey_ab_assignments_total", endpoint="ab_ep", experiment="price-v3", variant="control") == 2
    assert _value("journey_events_total", status="rejected") == before + 4
    assert (_value("journey_event_push_seconds_count") or 0) >= 1


def test_prime_series_creates_zero_counters_for_configured_names() -> None:
    m.prime_series(services=["primed_svc"], routes=[("primed_ep", "a"), ("primed_ep", "b")])

    for reason in m.DEFAULT_REASONS:
        assert _value("journey_feature_defaults_total", service="primed_svc", reason=reason) == 0
    assert _value("journey_ab_assignments_total", endpoint="primed_ep", experiment="", variant="b") == 0


def test_buckets_cover_sub_millisecond_to_five_seconds_and_probabilities() -> None:
    assert m.LATENCY_BUCKETS[0] == 0.0005 and m.LATENCY_BUCKETS[-1] == 5.0
    assert m.STEP_BUCKETS[0] < m.LATENCY_BUCKETS[0]
    assert m.SCORE_BUCKETS[0] == 0.05 and m.SCORE_BUCKETS[-1] == 1.0 and len(m.SCORE_BUCKETS) == 20
    assert list(m.LATENCY_BUCKETS) == sorted(m.LATENCY_BUCKETS)


def test_multiprocess_mode_is_off_in_a_process_started_without_the_directory() -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    code = "from serving import metrics as m; print(m.multiprocess_active())"

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


WORKER = """
import json, sys
from datetime import UTC, datetime, timedelta
from serving import metrics as m

step = json.loads(sys.argv[1])
assert m.multiprocess_active(), "PROMETHEUS_MULTIPROC_DIR was not picked up"
if step["kind"] == "collect":
    sys.stdout.write(m.exposition().decode())
else:
    now = datetime.now(UTC)
    m.count_assignment("mp_ep", "a")
    m.observe_request("mp_ep", "a", 200, 0.003)
    m.set_online_store_degraded(step["degraded"])
    m.set_execution_provider("mp_model", "1", "CPUExecutionProvider")
    m.record_feature_ages({"mp_view": [now - timedelta(seconds=step["age"])]}, now=now)
    m.record_scores("mp_model", "1", [0.1, 0.9])
"""


def _worker(step: dict[str, object], directory: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(step)],
        cwd=REPO_ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_workers_merge_counters_and_histograms_and_gauges_by_their_mode(tmp_path: Path) -> None:
    """Two BentoML-like workers, one after the other: the first saw the store down and an old row, the second not."""
    _worker({"kind": "serve", "degraded": True, "age": 100}, tmp_path)
    _worker({"kind": "serve", "degraded": False, "age": 5}, tmp_path)

    merged = _samples(_worker({"kind": "collect"}, tmp_path))

    def value(name: str, **labels: str) -> float | None:
        return merged.get((name, tuple(sorted(labels.items()))))

    assert value("journey_ab_assignments_total", endpoint="mp_ep", experiment="", variant="a") == 2  # counters add up
    assert value("journey_request_duration_seconds_count", endpoint="mp_ep", variant="a", status="200") == 2
    assert value("journey_prediction_score_count", model="mp_model", version="1") == 4
    assert value("journey_online_store_degraded") == 0  # mostrecent: the later "up" wins over the earlier "down"
    assert value("journey_feature_age_seconds", view="mp_view") == pytest.approx(5, abs=1)  # mostrecent, not max
    # livemax: one series without a pid label, 1 while any worker serves it
    assert value("journey_execution_provider", model="mp_model", version="1", provider="CPUExecutionProvider") == 1
    assert not any(dict(labels).get("pid") for _, labels in merged)
