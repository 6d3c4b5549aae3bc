"""What one training run hands to evaluation and the registry: the exported model and its competitors' test scores.

Trainers (`propensity.py`, `next_action.py`) return a `TrainingRun`; `evaluate.py` turns it into metrics and a report,
`pipeline.py` registers it. Keeping this a plain data contract lets each trainer be tested without the registry and
the report be tested without training anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.export import ExportReport
from training.splits import SplitSummary


@dataclass(frozen=True)
class Candidate:
    """A model or baseline scored on the test split.

    `scores`: binary tasks P(label = 1), shape [n]; multi-class tasks class probabilities, shape [n, len(classes)]
    (a baseline without probabilities puts 1.0 on its predicted class).
    """

    name: str
    scores: np.ndarray
    is_model: bool = False


@dataclass(frozen=True)
class TrainingRun:
    """One trained model version before registration."""

    model_name: str  # registry name: "purchase_propensity", "next_action"
    framework: str  # "xgboost", "pytorch"
    feature_service: str
    export: ExportReport
    feature_order: tuple[str, ...]
    classes: tuple[str, ...]  # ("0", "1") for binary tasks
    labels: np.ndarray  # test labels as class indices, shape [n]
    candidates: tuple[Candidate, ...]  # the model first, then the baselines
    split: SplitSummary
    params: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch/iteration curves (valid loss, ...)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> Candidate:
        return next(c for c in self.candidates if c.is_model)
