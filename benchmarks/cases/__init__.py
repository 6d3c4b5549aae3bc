"""Benchmark cases, in the order `make bench` runs them."""

from __future__ import annotations

from benchmarks.cases import event_import, feature_store, online_features
from benchmarks.harness import Case

CASES: list[Case] = [event_import.CASE, feature_store.CASE, online_features.CASE]
