"""Purchase propensity: will this user buy this item later in this session? XGBoost on `purchase_propensity_v1`.

The model is judged against what a team would ship without it, on the same later days (`baselines.py`):

    logistic_regression   the same features, median-imputed (with missing indicators) and standardised
    cart_heuristic        "has the user added to cart this session": the purchase rate of the examples with and
                          without a cart in the session, estimated on the training days (a calibrated 2-level score)

Training: `time_split` (train on earlier days, early stopping on the validation days, test on the last ones), then
the booster is refitted on the training days with the early-stopped number of trees. The refit matters for export:
onnxmltools converts every tree in the booster, while `predict_proba` after early stopping would use only the best
iteration's trees, and the parity check would (rightly) refuse the export.

Features are the service's features in service order plus the request's `candidate_price`; the order is stored in
the ONNX file (`journey.feature_order`) and `journey.model_inputs.feature_matrix` builds rows in it, online too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from journey.contracts import PURCHASE_PROPENSITY_V1
from journey.errors import InvalidInputError
from journey.model_inputs import feature_matrix
from training.export import ExportReport, export_xgboost
from training.labels import LABEL, LABEL_TIMESTAMP, ROW_ID, TIMESTAMP
from training.models.baselines import (
    CART_HEURISTIC,
    HEURISTIC_COLUMN,
    LOGISTIC_REGRESSION,
    cart_heuristic,
    logistic_regression,
)
from training.runs import Candidate, TrainingRun, session_groups, with_validation
from training.splits import TimeSplit, time_split

log = logging.getLogger(__name__)

MODEL_NAME: Final = "purchase_propensity"
REQUEST_FEATURES: Final = ("candidate_price",)
# entity-row columns carried through the training set that are not model inputs
NON_FEATURES: Final = frozenset(
    {
        *(ROW_ID, "event_id", TIMESTAMP, "user_id", "item_id", "session_id"),
        *("request_ts", "candidate_item_id", LABEL, LABEL_TIMESTAMP),
    }
)
HOLDOUT_ROWS: Final = 2048

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class PropensityConfig:
    """XGBoost hyper-parameters; `max_trees` is the ceiling early stopping works under."""

    max_trees: int = 1500
    learning_rate: float = 0.03
    max_depth: int = 5
    min_child_weight: float = 10.0
    subsample: float = 0.9
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 60
    n_jobs: int = max(1, min(8, os.cpu_count() or 1))
    valid_fraction: float = 0.15
    test_fraction: float = 0.15
    min_split_rows: int = 20


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model's input columns: the service's features (frame order) then the request features."""
    features = [c for c in frame.columns if c not in NON_FEATURES and c not in REQUEST_FEATURES]
    return [*features, *REQUEST_FEATURES]


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame[LABEL].to_numpy(dtype=np.int64)


def _check_classes(name: str, y: np.ndarray) -> None:
    classes = np.unique(y)
    if len(classes) < 2:
        found = "no rows" if len(classes) == 0 else f"only label {int(classes[0])}"
        raise InvalidInputError(
            f"the {name} days have {found} ({len(y)} rows): a purchase model needs both purchases and non-purchases "
            "there; use a longer dataset or a wider --horizon",
            field="label",
            value=f"{name}: {classes.tolist()}",
        )


def _xgb(config: PropensityConfig, seed: int, trees: int, early_stopping: bool) -> Any:
    from xgboost import XGBClassifier  # a heavy import that only a propensity run needs

    return XGBClassifier(
        n_estimators=trees,
        learning_rate=config.learning_rate,
        max_depth=config.max_depth,
        min_child_weight=config.min_child_weight,
        subsample=config.subsample,
        colsample_bytree=config.colsample_bytree,
        reg_lambda=config.reg_lambda,
        tree_method="hist",
        objective="binary:logistic",
        eval_metric=["logloss", "auc"],
        early_stopping_rounds=config.early_stopping_rounds if early_stopping else None,
        n_jobs=config.n_jobs,
        random_state=seed,
    )


def _fit_xgboost(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    config: PropensityConfig,
    seed: int,
) -> tuple[Any, dict[str, list[float]]]:
    probe = _xgb(config, seed, config.max_trees, early_stopping=True)
    probe.fit(x_train, y_train, eval_set=[(x_train, y_train), (x_valid, y_valid)], verbose=False)
    trees = int(probe.best_iteration) + 1
    curves = probe.evals_result()
    history = {
        "train_logloss": [float(v) for v in curves["validation_0"]["logloss"]],
        "valid_logloss": [float(v) for v in curves["validation_1"]["logloss"]],
        "valid_auc": [float(v) for v in curves["validation_1"]["auc"]],
    }
    model = _xgb(config, seed, trees, early_stopping=False)
    model.fit(x_train, y_train, verbose=False)
    log.info("xgboost fitted", extra={"trees": trees, "max_trees": config.max_trees, "rows": len(y_train)})
    return model, history


def train_propensity(
    frame: pd.DataFrame,
    onnx_path: Path,
    *,
    config: PropensityConfig | None = None,
    seed: int = 42,
    progress: Progress | None = None,
) -> TrainingRun:
    """Fit XGBoost and both baselines on a `purchase_propensity_v1` training set; export the booster to ONNX.

    Raises InvalidInputError (exit code 2 in the CLI) when the data cannot support an honest model: too few rows for
    the time split, or a split with a single class.
    """
    config = config or PropensityConfig()
    say = progress or (lambda _step, _fraction: None)
    _check_frame(frame)
    split = time_split(
        frame, valid_fraction=config.valid_fraction, test_fraction=config.test_fraction, min_rows=config.min_split_rows
    )
    columns = feature_columns(frame)
    y = {name: _labels(part) for name, part in (("train", split.train), ("valid", split.valid), ("test", split.test))}
    for name, labels in y.items():
        _check_classes(name, labels)
    x_train, x_valid, x_test = (feature_matrix(p, columns) for p in (split.train, split.valid, split.test))

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    say("fitting XGBoost (early stopping on the validation days)", 0.1)
    model, history = _fit_xgboost(x_train, y["train"], x_valid, y["valid"], config, seed)
    seconds["fit"] = time.perf_counter() - started

    say("fitting the logistic-regression baseline", 0.6)
    started = time.perf_counter()
    lr = logistic_regression(x_train, y["train"], seed)
    seconds["fit_baselines"] = time.perf_counter() - started

    say("exporting to ONNX (parity check)", 0.8)
    started = time.perf_counter()
    export = export_xgboost(model, columns, x_test[:HOLDOUT_ROWS], onnx_path)
    seconds["export"] = time.perf_counter() - started

    candidates = with_validation(  # the test days for the report, the validation days for the promotion gate
        _scored(model, lr, split.train, split.test, x_test), _scored(model, lr, split.train, split.valid, x_valid)
    )
    say("done", 1.0)
    params = {**asdict(config), "seed": seed, "trees": int(model.n_estimators), "features": len(columns)}
    return _run(export, columns, y, candidates, split, params, history, seconds)


def _scored(model: Any, lr: Any, train: pd.DataFrame, part: pd.DataFrame, x: np.ndarray) -> tuple[Candidate, ...]:
    """The model and both baselines scored on one split's rows (`part`, feature matrix `x`)."""
    return (
        Candidate("xgboost", model.predict_proba(x)[:, 1].astype(np.float64), is_model=True),
        Candidate(LOGISTIC_REGRESSION, lr.predict_proba(x)[:, 1].astype(np.float64)),
        Candidate(CART_HEURISTIC, cart_heuristic(train, part)),
    )


def _check_frame(frame: pd.DataFrame) -> None:
    """A propensity training set has 0/1 integer labels and the heuristic's column."""
    label_column = frame[LABEL] if LABEL in frame.columns else None
    labels_ok = (
        label_column is not None and pd.api.types.is_integer_dtype(label_column) and label_column.isin([0, 1]).all()
    )
    if not labels_ok or HEURISTIC_COLUMN not in frame.columns:
        raise InvalidInputError(
            f"not a {PURCHASE_PROPENSITY_V1} training set: needs a 0/1 {LABEL!r} column and {HEURISTIC_COLUMN!r}",
            field="frame",
            value=sorted(frame.columns)[:20],
        )


def _run(
    export: ExportReport,
    columns: list[str],
    labels: dict[str, np.ndarray],
    candidates: tuple[Candidate, ...],
    split: TimeSplit,
    params: dict[str, Any],
    history: dict[str, list[float]],
    seconds: dict[str, float],
) -> TrainingRun:
    return TrainingRun(
        model_name=MODEL_NAME,
        framework="xgboost",
        feature_service=PURCHASE_PROPENSITY_V1,
        export=export,
        feature_order=tuple(columns),
        classes=("0", "1"),
        labels=labels["test"],
        candidates=candidates,
        split=split.summary,
        params=params,
        history=history,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        valid_labels=labels["valid"],
        valid_groups=session_groups(split.valid),
    )
