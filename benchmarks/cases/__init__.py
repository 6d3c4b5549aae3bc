"""Benchmark cases, in the order `make bench` runs them."""

from __future__ import annotations

from benchmarks.cases import (
    event_import,
    feature_store,
    journey_analysis,
    model_inference,
    online_features,
    serving,
    training_e2e,
)
from benchmarks.harness import Case

CASES: list[Case] = [
    event_import.CASE,
    feature_store.CASE,
    online_features.CASE,
    model_inference.CASE,
    training_e2e.CASE,
    journey_analysis.CASE,
    serving.CASE,
]
