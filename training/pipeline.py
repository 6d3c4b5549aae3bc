"""From a stored event dataset to a registered model version with its evaluation report, in one call.

    build_offline(dataset, settings)     batch features + session history into the offline store (+ a manifest)
    run_training(kind, dataset, ...)     training set (Feast, point in time) -> fit + baselines -> ONNX with parity
                                         -> evaluation -> registry (BentoML model store) -> report

The offline store holds one dataset's features at a time; the manifest written by `build_offline` lets a training
run refuse (exit code 2) to join dataset A's events with dataset B's features, which would train on garbage and
report it as a model.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from journey.contracts import NEXT_ACTION_V1, NEXT_ITEM_V1, PURCHASE_PROPENSITY_V1
from journey.datasets.store import DatasetStore
from journey.errors import InvalidInputError
from journey.registry import ModelVersion, Registry
from journey.settings import Settings
from training.datasets import build_training_set, write_session_history
from training.evaluate import Evaluation, evaluate
from training.features import build_features, last_build, record_build
from training.labels import DEFAULT_MAX_EXAMPLES, Horizon
from training.model_report import write_report
from training.models.propensity import train_propensity
from training.runs import TrainingRun

log = logging.getLogger(__name__)

ModelKind = Literal["propensity", "next-action", "next-item"]
SERVICES: Final[dict[str, str]] = {
    "propensity": PURCHASE_PROPENSITY_V1,
    "next-action": NEXT_ACTION_V1,
    "next-item": NEXT_ITEM_V1,
}
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class PipelineResult:
    run: TrainingRun
    evaluation: Evaluation
    version: ModelVersion
    report: Path
    training_meta: dict[str, Any]
    seconds: dict[str, float]


def build_offline(dataset: str, settings: Settings, progress: Callable[[str], None] | None = None) -> dict[str, str]:
    """Daily snapshots and the replayed session history of `dataset`, replacing the offline tables."""
    say = progress or (lambda _message: None)
    locations = build_features(dataset, settings, progress=say)
    say("replaying session history")
    locations["session_activity"] = write_session_history(dataset, settings)
    record_build(
        settings, dataset, DatasetStore(settings.events_dir).manifest(dataset).rows
    )  # no third read of the events
    return locations


def check_features_built(settings: Settings, dataset: str) -> None:
    """Refuse to train on `dataset` unless the offline tables were last built from it."""
    build = last_build(settings)
    if build is None or build.get("dataset") != dataset:
        built = "nothing" if build is None else f"dataset {build.get('dataset')!r}"
        raise InvalidInputError(
            f"the offline store holds features of {built}, not of {dataset!r}: run `journey features build --dataset "
            f"{dataset}` first (or pass --build-features)",
            field="dataset",
            value=dataset,
        )


def _trainer(kind: str) -> Callable[..., TrainingRun]:
    if kind == "propensity":
        return train_propensity
    # imported on use: the torch models import torch at their top, which `journey features build` (this module's
    # other user) and a propensity run should not pay for at start-up
    if kind == "next-item":
        from training.models.next_item import train_next_item

        return train_next_item
    from training.models.next_action import train_next_action

    return train_next_action


def _scaled(progress: Progress, start: float, end: float) -> Progress:
    return lambda step, fraction: progress(step, start + (end - start) * fraction)


def _data_window(run: TrainingRun, meta: dict[str, Any]) -> dict[str, Any]:
    split = run.split.as_dict()
    return {"dataset": meta.get("dataset"), "events": meta.get("events"), **split}


def run_training(
    kind: ModelKind,
    dataset: str,
    settings: Settings,
    *,
    seed: int | None = None,
    max_examples: int | None = DEFAULT_MAX_EXAMPLES,
    horizon: Horizon = "session",
    actor: str | None = None,
    progress: Progress | None = None,
) -> PipelineResult:
    """Train, evaluate, register and report one model version. Deterministic for a given seed and dataset."""
    if kind not in SERVICES:
        raise InvalidInputError(f"unknown model {kind!r}; known: {sorted(SERVICES)}", field="model", value=kind)
    say = progress or (lambda _step, _fraction: None)
    seed = settings.seed if seed is None else seed
    check_features_built(settings, dataset)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    say(f"building the {SERVICES[kind]} training set (point in time, Feast)", 0.0)
    options: dict[str, Any] = {"seed": seed, "max_examples": max_examples}
    if kind == "propensity":
        options["horizon"] = horizon
    frame, meta = build_training_set(dataset, SERVICES[kind], settings, **options)
    seconds["training_set"] = time.perf_counter() - started

    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    onnx_path = settings.models_dir / f"{kind}-{stamp}.onnx"
    run = _trainer(kind)(frame, onnx_path, seed=seed, progress=_scaled(say, 0.3, 0.85))
    seconds["train_and_export"] = time.perf_counter() - started

    say("evaluating on the test days", 0.88)
    evaluation = evaluate(run)
    say("registering the model version", 0.93)
    with Registry(settings) as registry:
        version = registry.register(
            name=run.model_name,
            onnx_path=run.export.path,
            expected_sha256=run.export.sha256,
            framework=run.framework,
            feature_service=run.feature_service,
            metrics={"primary": run.model.name, **evaluation.metrics},
            data_window=_data_window(run, meta),
            params={**run.params, "feature_order": list(run.feature_order), "classes": list(run.classes)},
            actor=actor or getpass.getuser(),
        )
        out_dir = settings.model_reports_dir / run.model_name / str(version.version)
        report = write_report(run, evaluation, out_dir, version=str(version.version), training_meta=meta)
        version = registry.attach_report(run.model_name, version.version, str(report))
    run.export.path.unlink(missing_ok=True)  # the BentoML model store now holds the registered copy
    say("done", 1.0)
    log.info(
        "model trained and registered",
        extra={"model": run.model_name, "version": version.version, "dataset": dataset, "report": str(report)},
    )
    return PipelineResult(run, evaluation, version, report, meta, {k: round(v, 2) for k, v in seconds.items()})


def parse_horizon(value: str) -> Horizon:
    """ "session" or a duration like 30m, 6h, 7d (CLI input)."""
    if value == "session":
        return "session"
    units = {"m": "minutes", "h": "hours", "d": "days"}
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise InvalidInputError(
            f"--horizon must be 'session' or a positive duration like 30m, 6h, 7d; got {value!r}",
            field="--horizon",
            value=value,
        )
    return timedelta(**{units[unit]: int(number)})
