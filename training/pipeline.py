"""From a stored event dataset to a registered model version with its evaluation report, in one call.

    build_offline(dataset, settings)     batch features + session history into the offline store (+ a manifest)
    run_training(kind, dataset, ...)     training set (Feast, point in time) -> fit + baselines -> ONNX with parity
                                         -> evaluation (test days) + promotion gate (validation days, `gate.py`)
                                         -> registry (BentoML model store; the gate in the version's metrics)
                                         -> report
    promote_trained(result, ...)         production, when the gate passed or the promotion is forced with a reason
                                         (audited); otherwise GateRefusedError (exit code 2) and the version stays
                                         in staging

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
from training.gate import GateResult, promotion_gate
from training.labels import DEFAULT_MAX_EXAMPLES, Horizon
from training.model_report import write_report
from training.models.propensity import train_propensity
from training.promotion import GATE_KEY, promotion_note
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
    gate: GateResult


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


def _trainer_options(kind: str, recommender: str | None, config: Any = None) -> dict[str, Any]:
    """The model and the next-item kind checked up front (before the training set is built): the trainer's options
    (`config`: the hyper-parameters of the model or next-item kind, `training/configs.py`; None: its defaults)."""
    if kind not in SERVICES:
        raise InvalidInputError(f"unknown model {kind!r}; known: {sorted(SERVICES)}", field="model", value=kind)
    if config is not None and kind == "propensity":
        raise InvalidInputError("propensity takes no hyper-parameter config", field="config")
    if recommender is None:
        return {} if config is None else {"kind_config" if kind == "next-item" else "config": config}
    if kind != "next-item":
        raise InvalidInputError(f"a recommender kind applies to next-item only, not {kind!r}", field="kind")
    from training.models.next_item import kind_or_auto  # imported on use: see _trainer

    return {"kind": kind_or_auto(recommender), **({} if config is None else {"kind_config": config})}


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
    recommender: str | None = None,
    config: Any = None,
) -> PipelineResult:
    """Train, evaluate, register and report one model version (`recommender`: the next-item kind, None gru4rec; any
    kind a `next_item` version; `config`: its hyper-parameters, None the defaults). Deterministic given the inputs."""
    trainer_options = _trainer_options(kind, recommender, config)
    say = progress or (lambda _step, _fraction: None)
    seed = settings.seed if seed is None else seed
    check_features_built(settings, dataset)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    say(f"building the {SERVICES[kind]} training set (point in time, Feast)", 0.0)
    options: dict[str, Any] = {"seed": seed, "max_examples": max_examples}
    options |= {"horizon": horizon} if kind == "propensity" else {}
    frame, meta = build_training_set(dataset, SERVICES[kind], settings, **options)
    seconds["training_set"] = time.perf_counter() - started

    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    onnx_path = settings.models_dir / f"{kind}-{stamp}.onnx"
    run = _trainer(kind)(frame, onnx_path, seed=seed, progress=_scaled(say, 0.3, 0.85), **trainer_options)
    seconds["train_and_export"] = time.perf_counter() - started

    say("evaluating on the test days, the promotion gate on the validation days", 0.88)
    evaluation = evaluate(run)
    gate = promotion_gate(run)
    say("registering the model version", 0.93)
    version, report = _register(run, evaluation, gate, meta, settings, actor or getpass.getuser())
    say("done", 1.0)
    log.info(
        "model trained and registered",
        extra={"model": run.model_name, "version": version.version, "dataset": dataset, "report": str(report)},
    )
    return PipelineResult(run, evaluation, version, report, meta, {k: round(v, 2) for k, v in seconds.items()}, gate)


def _register(
    run: TrainingRun,
    evaluation: Evaluation,
    gate: GateResult,
    meta: dict[str, Any],
    settings: Settings,
    actor: str,
) -> tuple[ModelVersion, Path]:
    """The version (its test metrics and its gate in `metrics`) and its report; the exported file is removed once the
    BentoML model store holds the registered copy."""
    with Registry(settings) as registry:
        version = registry.register(
            name=run.model_name,
            onnx_path=run.export.path,
            expected_sha256=run.export.sha256,
            framework=run.framework,
            feature_service=run.feature_service,
            metrics={"primary": run.model.name, **evaluation.metrics, GATE_KEY: gate.as_dict()},
            data_window=_data_window(run, meta),
            params={**run.params, "feature_order": list(run.feature_order), "classes": list(run.classes)},
            actor=actor,
        )
        out_dir = settings.model_reports_dir / run.model_name / str(version.version)
        report = write_report(run, evaluation, out_dir, version=str(version.version), training_meta=meta, gate=gate)
        version = registry.attach_report(run.model_name, version.version, str(report))
    run.export.path.unlink(missing_ok=True)
    return version, report


def promote_trained(
    result: PipelineResult, settings: Settings, *, actor: str, force_reason: str | None = None
) -> ModelVersion:
    """Promote the version `run_training` registered when its gate passed, or when forced with a reason (both in the
    promotion's audit detail). A failed gate without a reason raises `GateRefusedError` (exit code 2) naming the best
    baseline and the interval; the version stays registered in staging, to be promoted later with
    `journey models promote NAME VERSION --force --reason TEXT`."""
    name, number = result.version.name, result.version.version
    note = promotion_note(
        f"{name} v{number}",
        result.version.metrics,
        force=force_reason is not None,
        reason=force_reason,
        override=f"`journey models promote {name} {number} --force --reason TEXT` (it is registered, in staging)",
    )
    with Registry(settings) as registry:
        return registry.promote(name, number, actor, note=note)


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
