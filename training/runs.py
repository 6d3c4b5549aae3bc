"""What one training run hands to evaluation, the promotion gate and the registry: the exported model and its
competitors' scores on the validation and the test days.

Trainers (`propensity.py`, `next_action.py`, the next-item kinds) return a `TrainingRun`; `evaluate.py` turns its
test scores into metrics and a report, `gate.py` its validation scores into the promotion decision, `pipeline.py`
registers it. Keeping this a plain data contract lets each trainer be tested without the registry and the report
and the gate be tested without training anything.

What a trainer provides for the gate (every candidate, model and baselines alike, scored on the *same* validation
rows, exactly as on the test rows):

    TrainingRun.valid_labels     the validation split's labels, in the same encoding as `labels`
    TrainingRun.valid_groups     the validation rows' session ids (the gate's bootstrap resamples sessions, so the
                                 examples of one session move together); None: rows are resampled
    Candidate.valid_scores       the candidate's scores on those rows, in the same shape and meaning as `scores`

`with_validation(test, valid)` pairs the two lists of candidates a trainer scored (once on the test rows, once on
the validation rows) by name. A run without validation scores is never promoted by the gate (it says why).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from journey.contracts import SESSION
from journey.errors import InvalidInputError
from training.export import ExportReport
from training.splits import SplitSummary


@dataclass(frozen=True)
class Candidate:
    """A model or baseline scored on the test split (and on the validation split, for the gate).

    `scores`: binary tasks P(label = 1), shape [n]; multi-class tasks class probabilities, shape [n, len(classes)]
    (a baseline without probabilities puts 1.0 on its predicted class); ranking tasks the recommended item ids,
    best first, shape [n, k] (-1 where the list is shorter). `valid_scores`: the same on the validation rows.
    """

    name: str
    scores: np.ndarray
    is_model: bool = False
    valid_scores: np.ndarray | None = None


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
    valid_labels: np.ndarray | None = None  # validation labels, same encoding as `labels` (the gate's rows)
    valid_groups: np.ndarray | None = None  # session id of each validation row (the gate resamples sessions)

    @property
    def model(self) -> Candidate:
        return next(c for c in self.candidates if c.is_model)

    @property
    def baselines(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if not c.is_model)


def with_validation(test: Iterable[Candidate], valid: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """The test candidates, each with the validation scores of the candidate of the same name (order of `test`)."""
    test, by_name = tuple(test), {c.name: c.scores for c in valid}
    missing = [c.name for c in test if c.name not in by_name]
    if missing:
        raise InvalidInputError(f"no validation scores for candidate {missing[0]!r}", field="candidates")
    return tuple(replace(c, valid_scores=by_name[c.name]) for c in test)


def session_groups(part: pd.DataFrame) -> np.ndarray | None:
    """The session id of each row of a split (`TrainingRun.valid_groups`); None for a frame without sessions."""
    return part[SESSION].to_numpy() if SESSION in part.columns else None
