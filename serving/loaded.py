"""A registered model version loaded into ONNX Runtime in this worker: placed, warmed, timed, published.

`load_version` is the one way serving loads a version (the registry re-hashes the stored file first); `Loaded.run`
is the one way it calls one (batch size and inference time recorded). The metrics a loaded version publishes
(execution provider, whether a GPU was expected, the drift reference) are set and cleared here, when the lifecycle
swaps versions in and out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from journey.contracts import PURCHASE_PROPENSITY_MODEL
from journey.settings import Settings
from serving import metrics
from serving.runtime import CPU_ONLY_FRAMEWORKS, ModelRuntime, Placement, nvidia_device_present
from serving.runtime.providers import measured_crossover, place

if TYPE_CHECKING:
    from journey.registry import ModelVersion, Registry

log = logging.getLogger(__name__)

REPORT_METRICS_FILE: Final = "metrics.json"  # training.model_report.METRICS_FILE, written beside the version's report


@dataclass(frozen=True)
class Loaded:
    """One registered version loaded in this worker (shared by every variant and snapshot that serves it)."""

    version: ModelVersion
    runtime: ModelRuntime

    @property
    def key(self) -> tuple[str, int, str]:
        return self.version.name, self.version.version, self.version.onnx_sha256

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One model call on this worker's session, its batch size and time recorded."""
        name, version = self.version.name, str(self.version.version)
        rows = len(next(iter(feeds.values()))) if feeds else 0
        metrics.observe_batch_size(name, rows)
        with metrics.time_inference(name, version, self.runtime.provider):
            return self.runtime.run(dict(feeds))

    def publish(self) -> None:
        """Set the metrics of a version this worker now serves."""
        name, version = self.version.name, str(self.version.version)
        metrics.set_execution_provider(name, version, self.runtime.provider)
        metrics.set_gpu_expected(name, version, gpu_expected(self.runtime))
        if (reference := training_score_mean(self.version)) is not None:
            metrics.set_training_score_mean(name, version, reference)

    def unpublish(self) -> None:
        """This worker no longer serves the version: its provider series drops to 0."""
        metrics.clear_execution_provider(self.version.name, str(self.version.version), self.runtime.provider)


def load_version(registry: Registry, name: str, version: int | str, settings: Settings) -> Loaded:
    """A registered version's ONNX Runtime session, warmed (the stored file's hash re-checked first), on the
    provider the policy places it on."""
    mv = registry.get(name, version)
    runtime = ModelRuntime.load(
        registry.artifact_path(mv),
        intra_op_threads=settings.ort_intra_op_threads,
        inter_op_threads=settings.ort_inter_op_threads,
        placement=placement_for(mv, settings),
    )
    return Loaded(mv, runtime)


def gpu_expected(runtime: ModelRuntime) -> bool:
    """Whether this model should run on a GPU here: what the provider policy decided when it placed the model, else
    (a runtime loaded without the policy) whether the host exposes an NVIDIA device and the graph has CUDA kernels
    (tree ensembles never do). With the provider in use it makes the "GPU expected but CPU in use" alert."""
    if runtime.placement is not None:
        return runtime.placement.gpu_expected
    return nvidia_device_present() and runtime.metadata.framework not in CPU_ONLY_FRAMEWORKS


def serving_batch(name: str, settings: Settings) -> int:
    """Rows per model call that serving sends `name`: adaptive batching merges purchase requests up to
    `batch_max_size`; everything scored in-process counts as one row (serving.runtime.providers says why)."""
    return settings.batch_max_size if name == PURCHASE_PROPENSITY_MODEL and settings.adaptive_batching else 1


def placement_for(version: ModelVersion, settings: Settings) -> Placement:
    """The provider policy's decision for one registered version on this host."""
    crossover, problem = (None, "")
    if settings.execution_provider == "auto":
        crossover, problem = measured_crossover(settings.gpu_report_path, version.name)
    return place(
        settings.execution_provider,
        framework=version.framework,
        gpu_present=nvidia_device_present(),
        batch=serving_batch(version.name, settings),
        crossover=crossover,
        crossover_problem=problem,
    )


def training_score_mean(version: ModelVersion) -> float | None:
    """The drift reference of a version: the mean score it should serve when traffic looks like its training data.

    In order: `metrics["score_reference"]["mean"]` when the training run registered one; for a binary model, the
    training set's positive rate from the evaluation report's metrics.json (`training_set.positive_rate`): a model
    trained on log loss without class weights, as the propensity model is, is calibrated, so its mean score is the
    base rate. None (no reference, no drift alert) when neither is there, e.g. a multi-class model or a serving host
    that cannot read the reports directory.
    """
    reference = version.metrics.get("score_reference")
    if isinstance(reference, dict) and isinstance(reference.get("mean"), int | float):
        return float(reference["mean"])
    if version.report_path is None or len(version.params.get("classes") or ()) != 2:
        return None
    path = Path(version.report_path).with_name(REPORT_METRICS_FILE)
    try:
        rate = json.loads(path.read_text(encoding="utf-8")).get("training_set", {}).get("positive_rate")
    except (OSError, ValueError, AttributeError) as exc:
        log.info("no training score reference", extra={"model": version.name, "path": str(path), "error": str(exc)})
        return None
    return float(rate) if isinstance(rate, int | float) else None
