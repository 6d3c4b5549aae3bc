"""End-to-end training time on synthetic events: features -> Feast training sets -> fit -> ONNX -> registry.

One run per stage (each takes seconds to minutes; repeating them would say little more on a shared machine), in a
throw-away local-profile data dir under the bench folder, so the demo's features and registry are not touched.
Stages: batch features + session history, `feast apply`, then per model the point-in-time training set (200k
examples), fit with baselines, export with parity, evaluation report and registration.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from benchmarks.harness import Case, Result
from journey.settings import Profile, Settings, get_settings

if TYPE_CHECKING:
    from training.pipeline import ModelKind

T = TypeVar("T")
CASE_NAME = "training_e2e"
DATASET = "bench"


def _timed(name: str, events: int, fn: Callable[[], T]) -> tuple[Result, T]:
    started = time.perf_counter()
    value = fn()
    return Result(CASE_NAME, name, [time.perf_counter() - started], rows=events, unit="events"), value


def run(quick: bool) -> list[Result]:
    from journey.datasets.store import DatasetStore
    from journey.datasets.synthetic import SyntheticConfig, generate
    from journey.stores.feature_store import apply
    from training.pipeline import build_offline, run_training

    target = 200_000 if quick else 2_000_000
    root = get_settings().data_dir / "bench" / "training_e2e"
    shutil.rmtree(root, ignore_errors=True)
    settings = Settings(profile=Profile.LOCAL, data_dir=root / "data", reports_dir=root / "reports")
    data = generate(SyntheticConfig(seed=7).scaled_to(target))
    events = data.events.num_rows
    DatasetStore(settings.events_dir).write(DATASET, data.events, source={"kind": "synthetic", "bench": CASE_NAME})
    started = time.perf_counter()
    results = [_timed("batch features + session history", events, lambda: build_offline(DATASET, settings))[0]]
    results.append(_timed("feast apply", events, lambda: apply(settings))[0])
    kinds: tuple[ModelKind, ...] = ("propensity", "next-action")
    for kind in kinds:
        name = f"{kind}: training set + fit + export + report + register"
        result, pipeline = _timed(name, events, partial(run_training, kind, DATASET, settings))
        result.note = ", ".join(f"{k} {v:.0f} s" for k, v in pipeline.seconds.items())
        results.append(result)
    total = Result(
        CASE_NAME,
        "total (features to two registered models)",
        [time.perf_counter() - started],
        rows=events,
        unit="events",
    )
    return [*results, total]


CASE = Case(CASE_NAME, "End-to-end training time on synthetic events (2M; --quick 200k)", run)
